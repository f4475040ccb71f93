// Simplified Chinese and English for every page. The browser's language picks the default;
// the choice is kept in localStorage. Elements carry data-i18n="key" (text),
// data-i18n-placeholder, data-i18n-title or data-i18n-aria-label; code calls Kefu.t(key, values).
(function (global) {
  "use strict";

  const LANGUAGES = {"en": "English", "zh-CN": "简体中文"};
  const messages = {"en": {}, "zh-CN": {}};
  let language = null;

  function detect() {
    const saved = global.localStorage.getItem("kefu.language");
    if (saved && LANGUAGES[saved]) return saved;
    const wanted = (global.navigator.languages || [global.navigator.language || "en"]);
    for (const tag of wanted) {
      if (/^zh\b/i.test(tag)) return "zh-CN";
      if (/^en\b/i.test(tag)) return "en";
    }
    return "en";
  }

  function register(table) {
    for (const [lang, entries] of Object.entries(table)) Object.assign(messages[lang] = messages[lang] || {}, entries);
  }

  function t(key, values) {
    const text = (messages[language] && messages[language][key]) || messages.en[key] || key;
    return values ? text.replace(/\{(\w+)\}/g, (_, name) => (values[name] ?? "")) : text;
  }

  function apply(root) {
    root = root || global.document;
    for (const element of root.querySelectorAll("[data-i18n]")) element.textContent = t(element.dataset.i18n);
    for (const element of root.querySelectorAll("[data-i18n-placeholder]")) element.placeholder = t(element.dataset.i18nPlaceholder);
    for (const element of root.querySelectorAll("[data-i18n-title]")) element.title = t(element.dataset.i18nTitle);
    for (const element of root.querySelectorAll("[data-i18n-aria-label]")) element.setAttribute("aria-label", t(element.dataset.i18nAriaLabel));
    global.document.documentElement.lang = language;
  }

  function setLanguage(lang) {
    if (!LANGUAGES[lang]) return;
    language = lang;
    global.localStorage.setItem("kefu.language", lang);
    apply();
    global.dispatchEvent(new CustomEvent("kefu:language", {detail: lang}));
  }

  // A <select> that switches the language; give it an id and a label in the page.
  function bindSwitcher(select) {
    select.innerHTML = "";
    for (const [lang, name] of Object.entries(LANGUAGES)) {
      const option = global.document.createElement("option");
      option.value = lang;
      option.textContent = name;
      select.appendChild(option);
    }
    select.value = language;
    select.addEventListener("change", () => setLanguage(select.value));
  }

  language = detect();
  global.Kefu = Object.assign(global.Kefu || {}, {t, register, apply, setLanguage, bindSwitcher, language: () => language, LANGUAGES});
})(window);

// Error codes of the server's refusals that a page shows as text (sign-in, uploads): the code
// of the JSON error and, when the answer had one, its Retry-After in seconds.
(function (global) {
  "use strict";
  global.Kefu.register({
    "en": {
      "error.rate_limited": "Too many attempts. Try again in {seconds} s.",
      "error.locked_out": "Too many wrong passwords: signing in is locked for {minutes} min. An administrator can unlock it now.",
      "error.busy": "The server is busy. Try again in {seconds} s.",
    },
    "zh-CN": {
      "error.rate_limited": "尝试次数过多，请 {seconds} 秒后重试。",
      "error.locked_out": "密码错误次数过多，登录已锁定 {minutes} 分钟。管理员可以立即解锁。",
      "error.busy": "服务器繁忙，请 {seconds} 秒后重试。",
    },
  });

  // The translated text of a refusal, or null when `code` has none.
  function refusalText(code, retryAfter) {
    const key = "error." + code;
    if (!["error.rate_limited", "error.locked_out", "error.busy"].includes(key)) return null;
    const seconds = Math.max(1, parseInt(retryAfter, 10) || 1);
    return global.Kefu.t(key, {seconds: String(seconds), minutes: String(Math.ceil(seconds / 60))});
  }

  global.Kefu.refusalText = refusalText;
})(window);

// Who may open a page: the pages decide from the permissions of the signed-in user (the
// `permissions` of GET /api/v1/me and of the sign-in answer), never from the name of a role.
(function (global) {
  "use strict";
  global.Kefu.register({
    "en": {"page.forbidden": "Your role does not give access to this page. It needs one of these permissions: {permissions}."},
    "zh-CN": {"page.forbidden": "您的角色无权打开此页面，需要以下权限之一：{permissions}。"},
  });

  // Whether `user` holds `permission`.
  function holds(user, permission) { return Boolean(user && Array.isArray(user.permissions) && user.permissions.includes(permission)); }

  // Whether `user` holds at least one of `permissions`.
  function holdsAny(user, permissions) { return permissions.some((permission) => holds(user, permission)); }

  // The refusal shown to a user who holds none of the permissions a page needs.
  function pageForbiddenText(permissions) {
    return global.Kefu.t("page.forbidden", {permissions: permissions.join(", ")});
  }

  Object.assign(global.Kefu, {holds, holdsAny, pageForbiddenText});
})(window);

// Permissions and the refusals of role changes (server/roles.py), shown by the admin page. A
// permission's English text is the server's own description (GET /api/v1/permissions); other
// languages translate it here, keyed by the permission's name.
(function (global) {
  "use strict";
  global.Kefu.register({
    "en": {
      "error.role_in_use": "Someone holds this role: give them another role first.",
      "error.role_built_in": "Built-in roles cannot be changed or deleted, and their names are reserved.",
      "error.role_name_taken": "A role with this name already exists.",
      "error.unknown_permission": "That permission does not exist.",
      "error.permission_not_held": "You cannot grant a permission you do not hold yourself.",
      "error.too_many_roles": "This account has as many custom roles as it may have.",
      "error.forbidden": "Your role may not do this.",
    },
    "zh-CN": {
      "error.role_in_use": "仍有用户使用此角色：请先为他们更换角色。",
      "error.role_built_in": "内置角色不能修改或删除，其名称也不能使用。",
      "error.role_name_taken": "已存在同名角色。",
      "error.unknown_permission": "该权限不存在。",
      "error.permission_not_held": "不能授予您自己没有的权限。",
      "error.too_many_roles": "自定义角色数量已达上限。",
      "error.forbidden": "您的角色无权执行此操作。",
      "permission.conversations.handle": "上线接待、接受分配，在自己接待的会话中回复客户、转接和结束会话。",
      "permission.conversations.read_all": "查看账户内所有会话、客户和附件，而不仅是本部门的。",
      "permission.conversations.monitor": "实时监控账户内的坐席和会话（主管视图）。",
      "permission.contacts.view_unmasked": "查看客户完整的电话号码和电子邮箱（不打码）。",
      "permission.customers.update": "修改客户资料。",
      "permission.customers.erase": "删除客户的个人数据（被遗忘权）。",
      "permission.customers.merge": "合并两个客户记录，并拆分错误的合并。",
      "permission.queues.manage": "创建、修改和删除队列。",
      "permission.directory.read": "查看坐席、部门、团队和技能。",
      "permission.directory.manage": "创建和修改坐席、部门、团队和技能；解锁被锁定的坐席。",
      "permission.canned.manage_shared": "创建、修改和删除账户共享的快捷回复（个人快捷回复人人可管理）。",
      "permission.business_hours.manage": "修改账户的营业时间。",
      "permission.reports.view": "查看过往时段的报表（报表页面；实时看板需要 conversations.monitor）。",
      "permission.audit.read": "查看账户的审计日志。",
      "permission.roles.manage": "定义、修改和删除自定义角色。",
      "permission.channels.manage": "设置渠道：API 密钥、Webhook、App 的身份验证密钥。",
    },
  });

  // The text of `key` in the page's language, or `fallback` when that language has none.
  function textOr(key, fallback) {
    const translated = global.Kefu.t(key);
    return translated === key ? fallback : translated;
  }

  // A permission's description in the page's language (English: the server's).
  function permissionText(permission) {
    const translated = global.Kefu.t("permission." + permission.name);
    return global.Kefu.language() === "en" || translated === "permission." + permission.name ? permission.description : translated;
  }

  // A refusal's text: its code's translation when there is one, else the server's message.
  function errorText(error) { return textOr("error." + error.code, error.message); }

  Object.assign(global.Kefu, {textOr, permissionText, errorText});
})(window);
