// The admin pages: agents, departments and skills, roles, queues, account-wide canned responses
// and business hours, over the REST API. Errors are shown next to the form that caused them, in
// the page's language when their code has a translation (Kefu.errorText).
(function (global) {
  "use strict";
  const {api, el} = Kefu.staff;
  const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

  Kefu.register({
    "en": {
      "adm.title": "Administration", "adm.sections": "Sections", "adm.agents": "Agents", "adm.groups": "Departments and skills",
      "adm.queues": "Queues", "adm.canned": "Canned responses", "adm.hours": "Business hours", "adm.name": "Name",
      "adm.email": "E-mail", "adm.password": "Password (at least 10 characters)", "adm.role": "Role", "adm.departments": "Departments",
      "adm.department": "Department", "adm.skills": "Skills", "adm.skill": "Skill", "adm.skill_levels": "Skill levels (1–10, empty: none)",
      "adm.capacity": "Capacity", "adm.disabled": "Disabled", "adm.contact": "Sees phone/e-mail",
      "adm.contact_of": "{name} sees customers' phone numbers and e-mail addresses", "adm.actions": "Actions", "adm.agent.new": "New agent",
      "adm.create": "Create", "adm.add": "Add", "adm.save": "Save", "adm.new": "New", "adm.edit": "Edit", "adm.delete": "Delete",
      "adm.rename": "Rename", "adm.department.new": "New department", "adm.skill.new": "New skill", "adm.strategy": "Strategy",
      "adm.default": "Default", "adm.queue.new": "New queue", "adm.queue.edit": "Edit queue", "adm.min_level": "Minimum skill level",
      "adm.widen": "Widen after (seconds)", "adm.offer_timeout": "Offer timeout (seconds)", "adm.auto_accept": "Auto-accept",
      "adm.overflow_after": "Overflow after (seconds, empty: never)", "adm.overflow_queue": "Overflow queue",
      "adm.no_agent_message": "No-agent message", "adm.shortcut": "Shortcut", "adm.canned_title": "Title", "adm.body": "Text",
      "adm.canned.edit": "Account-wide response", "adm.timezone": "Time zone (IANA, e.g. Asia/Shanghai)",
      "adm.hours.help": "Open intervals per weekday, HH:MM-HH:MM, separated by commas; empty: closed.", "adm.saved": "Saved.", "adm.closed": "closed (e.g. 09:00-12:00, 13:00-18:00)",
      "adm.none": "(none)", "adm.yes": "yes", "adm.confirm_delete": "Delete {name}?", "adm.name_of": "Name of {name}",
      "adm.capacity_of": "Capacity of {name}", "adm.disabled_of": "{name} disabled", "adm.level_of": "Level of {name}",
      "role.agent": "Agent", "role.supervisor": "Supervisor", "role.admin": "Admin",
      "adm.roles": "Roles", "adm.permissions": "Permissions", "adm.holders": "Holders", "adm.role.new": "New role",
      "adm.role.edit": "Edit role", "adm.built_in": "built-in",
      "adm.roles.help": "A role is a set of permissions. The built-in roles cannot be changed; a role someone holds cannot be deleted. Changing a role's permissions signs its holders out.",
      "strategy.least_load": "Least load", "strategy.longest_idle": "Longest idle", "strategy.round_robin": "Round robin",
      "strategy.skills": "Skills", "strategy.priority": "Priority",
      "day.mon": "Monday", "day.tue": "Tuesday", "day.wed": "Wednesday", "day.thu": "Thursday", "day.fri": "Friday",
      "day.sat": "Saturday", "day.sun": "Sunday",
    },
    "zh-CN": {
      "adm.title": "管理后台", "adm.sections": "栏目", "adm.agents": "坐席", "adm.groups": "部门与技能",
      "adm.queues": "队列", "adm.canned": "快捷回复", "adm.hours": "营业时间", "adm.name": "名称",
      "adm.email": "电子邮箱", "adm.password": "密码（至少 10 个字符）", "adm.role": "角色", "adm.departments": "部门",
      "adm.department": "部门", "adm.skills": "技能", "adm.skill": "技能", "adm.skill_levels": "技能等级（1–10，留空表示无）",
      "adm.capacity": "接待上限", "adm.disabled": "已停用", "adm.contact": "可见电话/邮箱",
      "adm.contact_of": "{name} 可查看客户完整电话和邮箱", "adm.actions": "操作", "adm.agent.new": "新建坐席",
      "adm.create": "创建", "adm.add": "添加", "adm.save": "保存", "adm.new": "新建", "adm.edit": "编辑", "adm.delete": "删除",
      "adm.rename": "重命名", "adm.department.new": "新部门", "adm.skill.new": "新技能", "adm.strategy": "分配策略",
      "adm.default": "默认", "adm.queue.new": "新建队列", "adm.queue.edit": "编辑队列", "adm.min_level": "最低技能等级",
      "adm.widen": "放宽等待（秒）", "adm.offer_timeout": "分配超时（秒）", "adm.auto_accept": "自动接入",
      "adm.overflow_after": "溢出等待（秒，留空表示不溢出）", "adm.overflow_queue": "溢出队列",
      "adm.no_agent_message": "无坐席提示语", "adm.shortcut": "快捷键", "adm.canned_title": "标题", "adm.body": "内容",
      "adm.canned.edit": "全账户快捷回复", "adm.timezone": "时区（IANA 名称，如 Asia/Shanghai）",
      "adm.hours.help": "每天的营业时段，格式 HH:MM-HH:MM，用逗号分隔；留空表示休息。", "adm.saved": "已保存。", "adm.closed": "休息（例如 09:00-12:00, 13:00-18:00）",
      "adm.none": "（无）", "adm.yes": "是", "adm.confirm_delete": "删除 {name}？", "adm.name_of": "{name} 的名称",
      "adm.capacity_of": "{name} 的接待上限", "adm.disabled_of": "停用 {name}", "adm.level_of": "{name} 等级",
      "role.agent": "坐席", "role.supervisor": "主管", "role.admin": "管理员",
      "adm.roles": "角色", "adm.permissions": "权限", "adm.holders": "使用人数", "adm.role.new": "新建角色",
      "adm.role.edit": "编辑角色", "adm.built_in": "内置",
      "adm.roles.help": "角色是一组权限。内置角色不可修改；仍有人使用的角色不能删除。修改角色的权限会让使用该角色的用户重新登录。",
      "strategy.least_load": "最少负载", "strategy.longest_idle": "最久空闲", "strategy.round_robin": "轮询",
      "strategy.skills": "按技能", "strategy.priority": "按优先级",
      "day.mon": "星期一", "day.tue": "星期二", "day.wed": "星期三", "day.thu": "星期四", "day.fri": "星期五",
      "day.sat": "星期六", "day.sun": "星期日",
    },
  });

  const state = {agents: [], departments: [], skills: [], roles: [], permissions: [], queues: [], canned: [], hours: null};
  const $ = (id) => document.getElementById(id);
  const UNMASKED = "contacts.view_unmasked";
  const DIRECTORY_READ = "directory.read";

  // Each section of the page and the permission it needs: the page opens for a user holding any
  // of them and shows only the sections whose permission they hold (whatever their role is called).
  const SECTIONS = {
    agents: "directory.manage", groups: "directory.manage", roles: "roles.manage",
    queues: "queues.manage", canned: "canned.manage_shared", hours: "business_hours.manage",
  };
  // What each section shows, so what the page reads for it.
  const SECTION_DATA = {
    agents: ["agents", "departments", "skills", "roles"], groups: ["departments", "skills"], roles: ["roles", "permissions"],
    queues: ["queues", "departments", "skills"], canned: ["canned"], hours: ["hours"],
  };
  const LOADERS = {
    agents: async () => { state.agents = (await api("GET", "/api/v1/agents")).agents; },
    departments: async () => { state.departments = (await api("GET", "/api/v1/departments")).departments; },
    skills: async () => { state.skills = (await api("GET", "/api/v1/skills")).skills; },
    roles: async () => { state.roles = (await api("GET", "/api/v1/roles")).roles; },
    permissions: async () => { state.permissions = (await api("GET", "/api/v1/permissions")).permissions; },
    queues: async () => { state.queues = (await api("GET", "/api/v1/queues")).queues; },
    canned: async () => {
      state.canned = (await api("GET", "/api/v1/canned-responses")).canned_responses.filter((c) => c.scope === "account");
    },
    hours: async () => { state.hours = await api("GET", "/api/v1/business-hours"); },
  };
  // What else to read again after a change: a role's holders change with the agents, a renamed
  // role renames its holders' role, and agents list their departments and skills.
  const RELATED = {
    agents: ["agents", "roles"], roles: ["roles", "agents"], departments: ["departments", "agents"],
    skills: ["skills", "agents"], queues: ["queues"], canned: ["canned"],
  };
  let user = null;
  let loaded = false;
  const shown = new Set();  // the sections this user sees
  const wanted = new Set();  // the data those sections read

  function showError(id, error) { $(id).textContent = error ? Kefu.errorText(error) : ""; }

  async function guarded(errorId, work) {
    showError(errorId, null);
    try { await work(); } catch (error) { showError(errorId, error); }
  }

  function optional(value) { return value === "" ? null : value; }

  // -- loading ------------------------------------------------------------------------------

  // Show the sections `signedIn` may use, hide the others (and their links), and note what they read.
  function chooseSections(signedIn) {
    user = signedIn;
    for (const [section, permission] of Object.entries(SECTIONS)) {
      const allowed = Kefu.holds(user, permission);
      $(section).hidden = !allowed;
      document.querySelector(`.tabs a[href="#${section}"]`).parentElement.hidden = !allowed;
      if (!allowed) continue;
      shown.add(section);
      for (const kind of SECTION_DATA[section]) wanted.add(kind);
    }
    // The queue section names departments and skills only for a user who may read them.
    if (!Kefu.holds(user, DIRECTORY_READ) && !shown.has("agents") && !shown.has("groups")) {
      wanted.delete("departments"); wanted.delete("skills");
    }
  }

  async function load(kinds) {
    await Promise.all(kinds.filter((kind) => wanted.has(kind)).map((kind) => LOADERS[kind]()));
  }

  async function loadAll(signedIn) {
    chooseSections(signedIn);
    await load(Object.keys(LOADERS));
    loaded = true;
    renderAll();
    if (shown.has("hours")) fillHours();
  }

  function renderAll() {
    if (shown.has("agents")) { renderAgents(); renderAgentChoices(); renderRoleChoices(); }
    if (shown.has("groups")) { renderGroups("departments"); renderGroups("skills"); }
    if (shown.has("roles")) { renderRoles(); renderPermissionChoices(); }
    if (shown.has("queues")) { renderQueues(); renderQueueChoices(); }
    if (shown.has("canned")) renderCanned();
    if (shown.has("hours")) renderHoursLabels();
  }

  // -- agents -------------------------------------------------------------------------------

  function renderAgents() {
    $("agents-table").tBodies[0].replaceChildren(...state.agents.map((agent) => {
      const capacity = el("input", {type: "number", min: 1, max: 100, value: agent.max_concurrent_conversations,
        "aria-label": Kefu.t("adm.capacity_of", {name: agent.display_name}), class: "capacity"});
      const disabled = el("input", {type: "checkbox", checked: agent.disabled, "aria-label": Kefu.t("adm.disabled_of", {name: agent.display_name}), class: "disabled"});
      // A role with contacts.view_unmasked always sees contact details; the flag matters for the others.
      const byRole = roleGrants(agent.role, UNMASKED);
      const contact = el("input", {type: "checkbox", checked: agent.may_view_contact_details || byRole, disabled: byRole,
        "aria-label": Kefu.t("adm.contact_of", {name: agent.display_name}), class: "contact"});
      const error = el("span", {class: "error row-error", role: "alert"});
      const save = el("button", {type: "button", class: "secondary", text: Kefu.t("adm.save"), onclick: async () => {
        error.textContent = "";
        try {
          const changes = {max_concurrent_conversations: Number(capacity.value), disabled: disabled.checked};
          if (!byRole) changes.may_view_contact_details = contact.checked;
          await api("PATCH", "/api/v1/agents/" + agent.id, changes);
          await refresh("agents");
        } catch (e) { error.textContent = e.message; }
      }});
      return el("tr", {"data-agent-id": agent.id},
        el("th", {scope: "row", text: agent.display_name}), el("td", {text: agent.email}), el("td", {text: roleLabel(agent.role)}),
        el("td", {text: agent.departments.map((d) => d.name).join(", ")}),
        el("td", {text: agent.skills.map((s) => s.name + " " + s.level).join(", ")}),
        el("td", {}, capacity), el("td", {}, disabled), el("td", {}, contact), el("td", {}, save, error));
    }));
  }

  function renderAgentChoices() {
    const departments = $("agent-departments");
    const checked = new Set([...departments.querySelectorAll("input:checked")].map((i) => i.value));
    departments.replaceChildren(departments.querySelector("legend"), ...state.departments.map((d) => el("label", {},
      el("input", {type: "checkbox", name: "departments", value: d.id, checked: checked.has(d.id)}), " " + d.name)));
    const skills = $("agent-skills");
    skills.replaceChildren(skills.querySelector("legend"), ...state.skills.map((s) => el("label", {}, s.name + " ",
      el("input", {type: "number", min: 1, max: 10, name: "skill-level", "data-skill-id": s.id, "aria-label": Kefu.t("adm.level_of", {name: s.name})}))));
  }

  $("agent-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    guarded("agent-error", async () => {
      await api("POST", "/api/v1/agents", {
        display_name: form.display_name.value, email: form.email.value, password: form.password.value, role: form.role.value,
        max_concurrent_conversations: Number(form.max_concurrent_conversations.value),
        may_view_contact_details: form.may_view_contact_details.checked,
        departments: [...form.querySelectorAll('input[name="departments"]:checked')].map((i) => i.value),
        skills: [...form.querySelectorAll('input[name="skill-level"]')].filter((i) => i.value !== "").map((i) => ({id: i.dataset.skillId, level: Number(i.value)})),
      });
      form.reset();
      await refresh("agents");
    });
  });

  // -- roles --------------------------------------------------------------------------------

  function findRole(name) { return state.roles.find((role) => role.name === name); }

  // A built-in role's name in the page's language; a custom role's as its admin wrote it.
  function roleLabel(name) {
    const role = findRole(name);
    return role && role.built_in ? Kefu.t("role." + name) : name;
  }

  function roleGrants(name, permission) {
    const role = findRole(name);
    return Boolean(role && role.permissions.includes(permission));
  }

  // Nobody gives a role with a permission they do not hold themselves (server/roles.py).
  function grantable(role) { return role.permissions.every((permission) => Kefu.holds(user, permission)); }

  function renderRoles() {
    $("roles-table").tBodies[0].replaceChildren(...state.roles.map((role) => {
      const actions = role.built_in ? [el("span", {class: "muted", text: Kefu.t("adm.built_in")})] : [
        el("button", {type: "button", class: "secondary", text: Kefu.t("adm.edit"), "aria-label": Kefu.t("adm.edit") + " " + role.name, onclick: () => editRole(role)}),
        " ",
        el("button", {type: "button", class: "danger", text: Kefu.t("adm.delete"), "aria-label": Kefu.t("adm.delete") + " " + role.name,
          onclick: () => guarded("roles-error", async () => {
            if (!global.confirm(Kefu.t("adm.confirm_delete", {name: role.name}))) return;
            await api("DELETE", "/api/v1/roles/" + role.id);
            await refresh("roles");
          })}),
      ];
      return el("tr", {"data-role": role.name},
        el("th", {scope: "row", text: roleLabel(role.name)}), el("td", {class: "permission-names", text: role.permissions.join(", ")}),
        el("td", {text: String(role.holders)}), el("td", {}, ...actions));
    }));
  }

  // The agent form's role choices: every role of the account, those the user may not give disabled.
  function renderRoleChoices() {
    const select = $("agent-role");
    // The default, which a reset goes back to (selected as an attribute), is the least permitted
    // built-in role: the server lists the built-in roles first, from most to least permitted.
    const least = state.roles.filter((role) => role.built_in).pop().name;
    const value = select.value || least;
    select.replaceChildren(...state.roles.map((role) => el("option", {
      value: role.name, text: roleLabel(role.name), selected: role.name === least, disabled: !grantable(role),
    })));
    select.value = findRole(value) ? value : least;
  }

  // The role form's permission boxes.
  function renderPermissionChoices() {
    const boxes = $("role-permissions");
    const checked = new Set([...boxes.querySelectorAll("input:checked")].map((i) => i.value));
    boxes.replaceChildren(boxes.querySelector("legend"), ...state.permissions.map((permission) => {
      // checked as a property, never an attribute: a reset then clears every box
      const box = el("input", {type: "checkbox", name: "permissions", value: permission.name});
      box.checked = checked.has(permission.name);
      return el("label", {}, box, " " + Kefu.permissionText(permission) + " ", el("code", {text: permission.name}));
    }));
  }

  function setRoleFormTitle(key) {
    $("role-form-title").dataset.i18n = key;
    $("role-form-title").textContent = Kefu.t(key);
  }

  function editRole(role) {
    const form = $("role-form");
    form.id.value = role.id;
    form.name.value = role.name;
    for (const box of form.querySelectorAll('input[name="permissions"]')) box.checked = role.permissions.includes(box.value);
    setRoleFormTitle("adm.role.edit");
    form.name.focus();
  }

  $("role-form").addEventListener("reset", () => {
    $("role-form").id.value = "";
    setRoleFormTitle("adm.role.new");
    showError("role-error", null);
  });

  $("role-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    guarded("role-error", async () => {
      const body = {name: form.name.value, permissions: [...form.querySelectorAll('input[name="permissions"]:checked')].map((i) => i.value)};
      if (form.id.value) await api("PATCH", "/api/v1/roles/" + form.id.value, body);
      else await api("POST", "/api/v1/roles", body);
      showError("roles-error", null);  // an earlier refusal in the table is stale now
      form.reset();
      await refresh("roles");
    });
  });

  // -- departments and skills ---------------------------------------------------------------

  function renderGroups(kind) {
    const errorId = kind + "-error";
    $(kind + "-list").replaceChildren(...state[kind].map((group) => {
      const name = el("input", {value: group.name, maxlength: 100, "aria-label": Kefu.t("adm.name_of", {name: group.name})});
      return el("li", {"data-id": group.id}, name,
        el("button", {type: "button", class: "secondary", text: Kefu.t("adm.rename"), onclick: () => guarded(errorId, async () => {
          await api("PATCH", `/api/v1/${kind}/${group.id}`, {name: name.value});
          await refresh(kind);
        })}),
        el("button", {type: "button", class: "danger", text: Kefu.t("adm.delete"), "aria-label": Kefu.t("adm.delete") + " " + group.name,
          onclick: () => guarded(errorId, async () => {
            if (!global.confirm(Kefu.t("adm.confirm_delete", {name: group.name}))) return;
            await api("DELETE", `/api/v1/${kind}/${group.id}`);
            await refresh(kind);
          })}));
    }));
  }

  for (const [kind, formId] of [["departments", "department-form"], ["skills", "skill-form"]]) {
    $(formId).addEventListener("submit", (event) => {
      event.preventDefault();
      const form = event.target;
      guarded(kind + "-error", async () => {
        await api("POST", "/api/v1/" + kind, {name: form.name.value});
        form.reset();
        await refresh(kind);
      });
    });
  }

  // -- queues -------------------------------------------------------------------------------

  // A department's or skill's name; its id when the user may not read the directory.
  function nameOf(list, id) { const found = state[list].find((item) => item.id === id); return found ? found.name : (id || ""); }

  // `items` and, named by their id, the ids the queues refer to that `items` lacks: the queue form
  // then keeps a queue's department and skill even for a user who may not read the directory.
  function withReferenced(items, ids) {
    const known = new Set(items.map((item) => item.id));
    const missing = [...new Set(ids.filter((id) => id && !known.has(id)))];
    return items.concat(missing.map((id) => ({id, name: id})));
  }

  function renderQueues() {
    $("queues-table").tBodies[0].replaceChildren(...state.queues.map((queue) => el("tr", {"data-queue-id": queue.id},
      el("th", {scope: "row", text: queue.name}), el("td", {text: nameOf("departments", queue.department_id)}),
      el("td", {text: Kefu.t("strategy." + queue.strategy)}), el("td", {text: queue.is_default ? Kefu.t("adm.yes") : ""}),
      el("td", {},
        el("button", {type: "button", class: "secondary", text: Kefu.t("adm.edit"), "aria-label": Kefu.t("adm.edit") + " " + queue.name, onclick: () => editQueue(queue)}),
        " ",
        el("button", {type: "button", class: "danger", text: Kefu.t("adm.delete"), "aria-label": Kefu.t("adm.delete") + " " + queue.name,
          onclick: () => guarded("queue-error", async () => {
            if (!global.confirm(Kefu.t("adm.confirm_delete", {name: queue.name}))) return;
            await api("DELETE", "/api/v1/queues/" + queue.id);
            await refresh("queues");
          })})))));
  }

  function fillSelect(select, items, keep) {
    const value = keep ? select.value : "";
    select.replaceChildren(el("option", {value: "", text: Kefu.t("adm.none")}), ...items.map((item) => el("option", {value: item.id, text: item.name})));
    select.value = items.some((item) => item.id === value) ? value : "";
  }

  function renderQueueChoices() {
    const form = $("queue-form");
    fillSelect(form.department_id, withReferenced(state.departments, state.queues.map((q) => q.department_id)), true);
    fillSelect(form.skill_id, withReferenced(state.skills, state.queues.map((q) => q.skill_id)), true);
    fillSelect(form.overflow_queue_id, state.queues.filter((q) => q.id !== form.id.value), true);
  }

  function editQueue(queue) {
    const form = $("queue-form");
    form.id.value = queue.id;
    renderQueueChoices();
    form.name.value = queue.name;
    form.department_id.value = queue.department_id || "";
    form.skill_id.value = queue.skill_id || "";
    form.strategy.value = queue.strategy;
    form.min_skill_level.value = queue.min_skill_level;
    form.widen_after_seconds.value = queue.widen_after_seconds;
    form.offer_timeout_seconds.value = queue.offer_timeout_seconds;
    form.auto_accept.checked = queue.auto_accept;
    form.overflow_after_seconds.value = queue.overflow_after_seconds ?? "";
    form.overflow_queue_id.value = queue.overflow_queue_id || "";
    form.no_agent_message.value = queue.no_agent_message || "";
    form.is_default.checked = queue.is_default;
    $("queue-form-title").dataset.i18n = "adm.queue.edit";
    $("queue-form-title").textContent = Kefu.t("adm.queue.edit");
    form.name.focus();
  }

  $("queue-form").addEventListener("reset", () => {
    $("queue-form").id.value = "";
    $("queue-form-title").dataset.i18n = "adm.queue.new";
    $("queue-form-title").textContent = Kefu.t("adm.queue.new");
    showError("queue-error", null);
    setTimeout(renderQueueChoices, 0);
  });

  $("queue-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    guarded("queue-error", async () => {
      const body = {
        name: form.name.value, department_id: optional(form.department_id.value), skill_id: optional(form.skill_id.value),
        strategy: form.strategy.value, min_skill_level: Number(form.min_skill_level.value),
        widen_after_seconds: Number(form.widen_after_seconds.value), offer_timeout_seconds: Number(form.offer_timeout_seconds.value),
        auto_accept: form.auto_accept.checked,
        overflow_after_seconds: form.overflow_after_seconds.value === "" ? null : Number(form.overflow_after_seconds.value),
        overflow_queue_id: optional(form.overflow_queue_id.value), no_agent_message: optional(form.no_agent_message.value.trim()),
        is_default: form.is_default.checked,
      };
      if (form.id.value) await api("PATCH", "/api/v1/queues/" + form.id.value, body);
      else await api("POST", "/api/v1/queues", body);
      form.reset();
      await refresh("queues");
    });
  });

  // -- canned responses ---------------------------------------------------------------------

  function renderCanned() {
    $("canned-table").tBodies[0].replaceChildren(...state.canned.map((canned) => el("tr", {"data-canned-id": canned.id},
      el("th", {scope: "row", text: canned.shortcut}), el("td", {text: canned.title}), el("td", {text: canned.body}),
      el("td", {},
        el("button", {type: "button", class: "secondary", text: Kefu.t("adm.edit"), "aria-label": Kefu.t("adm.edit") + " " + canned.shortcut, onclick: () => {
          const form = $("canned-form");
          form.id.value = canned.id; form.shortcut.value = canned.shortcut; form.title.value = canned.title; form.body.value = canned.body;
          form.shortcut.focus();
        }}),
        " ",
        el("button", {type: "button", class: "danger", text: Kefu.t("adm.delete"), "aria-label": Kefu.t("adm.delete") + " " + canned.shortcut,
          onclick: () => guarded("canned-error", async () => {
            if (!global.confirm(Kefu.t("adm.confirm_delete", {name: canned.shortcut}))) return;
            await api("DELETE", "/api/v1/canned-responses/" + canned.id);
            await refresh("canned");
          })})))));
  }

  $("canned-form").addEventListener("reset", () => { $("canned-form").id.value = ""; showError("canned-error", null); });

  $("canned-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    guarded("canned-error", async () => {
      const body = {shortcut: form.shortcut.value.trim(), title: form.title.value, body: form.body.value};
      if (form.id.value) await api("PATCH", "/api/v1/canned-responses/" + form.id.value, body);
      else await api("POST", "/api/v1/canned-responses", {scope: "account", ...body});
      form.reset();
      await refresh("canned");
    });
  });

  // -- business hours -----------------------------------------------------------------------

  function buildHours() {
    const days = $("hours-days");
    for (const day of WEEKDAYS) {
      days.append(el("label", {for: "hours-" + day, "data-i18n": "day." + day, text: Kefu.t("day." + day)}),
        el("input", {id: "hours-" + day, name: day, placeholder: Kefu.t("adm.closed"), "data-i18n-placeholder": "adm.closed", pattern: "\\s*(\\d\\d:\\d\\d-\\d\\d:\\d\\d\\s*(,\\s*\\d\\d:\\d\\d-\\d\\d:\\d\\d\\s*)*)?"}));
    }
    const zones = (Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : ["UTC", "Asia/Shanghai"]);
    $("timezones").replaceChildren(...zones.map((zone) => el("option", {value: zone})));
  }

  function renderHoursLabels() { Kefu.apply($("hours-days")); }

  function fillHours() {
    const form = $("hours-form");
    form.timezone.value = state.hours.timezone;
    for (const day of WEEKDAYS) form[day].value = (state.hours.schedule[day] || []).join(", ");
  }

  $("hours-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    $("hours-saved").textContent = "";
    guarded("hours-error", async () => {
      const schedule = {};
      for (const day of WEEKDAYS) schedule[day] = form[day].value.split(",").map((s) => s.trim()).filter(Boolean);
      state.hours = await api("PUT", "/api/v1/business-hours", {timezone: form.timezone.value.trim(), schedule});
      fillHours();
      $("hours-saved").textContent = Kefu.t("adm.saved");
    });
  });

  // -- refresh ------------------------------------------------------------------------------

  async function refresh(what) {
    await load(RELATED[what]);
    renderAll();
  }

  buildHours();
  global.addEventListener("kefu:language", () => {
    $("hours-saved").textContent = "";
    if (loaded) renderAll();
  });
  Kefu.staff.start([...new Set(Object.values(SECTIONS))], (signedIn) => loadAll(signedIn).catch((error) => showError("load-error", error)));
})(window);
