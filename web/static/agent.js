// The agent workbench: sign in, presence, offers, conversations and the chat pane.
// Speaks the agent side of docs/protocol.md through Kefu.KefuConnection.
(function () {
  "use strict";
  const t = Kefu.t;

  Kefu.register({
    "en": {
      "app.title": "Agent workbench", "language.label": "Language", "signout": "Sign out",
      "notify.enable": "Enable notifications", "notify.offer": "New conversation offered",
      "signin.title": "Sign in", "signin.account": "Account", "signin.email": "E-mail", "signin.password": "Password",
      "signin.submit": "Sign in", "signin.failed": "Invalid account, e-mail or password.", "signin.error": "Could not sign in: {error}",
      "status.title": "Status", "status.online": "Online", "status.break": "Break", "status.offline": "Offline",
      "status.wrap_up": "Wrap-up", "status.reason": "Break reason", "status.capacity": "Load",
      "status.wrap_up_left": "Wrap-up: {seconds} s left", "status.missed_offers": "put on break after missed offers",
      "views.label": "Views", "views.mine": "Mine ({count})", "views.offers": "Offers ({count})",
      "views.queued": "Queued ({count})", "views.departments": "My departments", "customer.anonymous": "Customer",
      "overview.waiting": "waiting {minutes} min", "overview.with": "with {agent}", "overview.failed": "Could not load the list: {error}",
      "list.empty": "Nothing here.", "list.unread": "{count} unread",
      "offer.accept": "Accept", "offer.decline": "Decline", "offer.expires": "expires in {seconds} s",
      "chat.none": "No conversation selected", "chat.with": "Conversation with {name}",
      "composer.label": "Message", "composer.placeholder": "Type a message, Enter to send, / for canned responses",
      "composer.note": "Internal note", "composer.attach": "Attach file", "composer.send": "Send",
      "composer.sending": "sending…", "composer.upload_failed": "Upload failed: {error}",
      "canned.search": "Search canned responses", "canned.open": "Canned responses", "canned.empty": "No canned responses.",
      "transfer.title": "Transfer", "transfer.department": "Department", "transfer.agent": "or agent id",
      "transfer.note": "Note for the receiver", "transfer.submit": "Transfer", "transfer.none": "(choose)",
      "transfer.missing": "Choose a department or type an agent id.",
      "close.title": "Close", "close.code": "Wrap-up code", "close.submit": "Close conversation",
      "customer.title": "Customer", "customer.name": "Name", "customer.channel": "Channel", "customer.level": "Level",
      "customer.topic": "Topic", "customer.phone": "Phone", "customer.email": "E-mail", "customer.history": "Earlier conversations", "customer.none": "None",
      "conn.connecting": "Connecting…", "conn.online": "Online", "conn.reconnecting": "Reconnecting…",
      "conn.offline": "Offline", "conn.signed-out": "Signed out",
      "event.queued": "Waiting in the queue", "event.assigned": "Assigned to {name}", "event.transferred": "Transferred",
      "event.closed": "Conversation closed", "event.wrapped_up": "Wrapped up {code}", "event.note": "Internal note",
      "event.read": "Read", "event.file": "Download {name}", "typing": "The customer is typing…",
      "error": "Error: {code}", "customer": "Customer", "you": "You",
    },
    "zh-CN": {
      "app.title": "坐席工作台", "language.label": "语言", "signout": "退出登录",
      "notify.enable": "开启桌面通知", "notify.offer": "新的会话邀请",
      "signin.title": "登录", "signin.account": "企业账号", "signin.email": "邮箱", "signin.password": "密码",
      "signin.submit": "登录", "signin.failed": "账号、邮箱或密码错误。", "signin.error": "无法登录：{error}",
      "status.title": "状态", "status.online": "在线", "status.break": "小休", "status.offline": "离线",
      "status.wrap_up": "话后处理", "status.reason": "小休原因", "status.capacity": "接待量",
      "status.wrap_up_left": "话后处理：剩余 {seconds} 秒", "status.missed_offers": "多次未接，已转为小休",
      "views.label": "视图", "views.mine": "我的会话（{count}）", "views.offers": "待接入（{count}）",
      "views.queued": "排队中（{count}）", "views.departments": "本部门会话", "customer.anonymous": "访客",
      "overview.waiting": "已等待 {minutes} 分钟", "overview.with": "接待坐席：{agent}", "overview.failed": "无法加载列表：{error}",
      "list.empty": "暂无。", "list.unread": "{count} 条未读",
      "offer.accept": "接入", "offer.decline": "拒绝", "offer.expires": "{seconds} 秒后过期",
      "chat.none": "未选择会话", "chat.with": "与 {name} 的会话",
      "composer.label": "消息", "composer.placeholder": "输入消息，回车发送，输入 / 使用快捷回复",
      "composer.note": "内部备注", "composer.attach": "上传附件", "composer.send": "发送",
      "composer.sending": "发送中…", "composer.upload_failed": "上传失败：{error}",
      "canned.search": "搜索快捷回复", "canned.open": "快捷回复", "canned.empty": "没有快捷回复。",
      "transfer.title": "转接", "transfer.department": "部门", "transfer.agent": "或坐席 ID",
      "transfer.note": "给接收方的备注", "transfer.submit": "转接", "transfer.none": "（请选择）",
      "transfer.missing": "请选择部门或填写坐席 ID。",
      "close.title": "结束", "close.code": "小结代码", "close.submit": "结束会话",
      "customer.title": "客户", "customer.name": "姓名", "customer.channel": "渠道", "customer.level": "等级",
      "customer.topic": "主题", "customer.phone": "电话", "customer.email": "邮箱", "customer.history": "历史会话", "customer.none": "无",
      "conn.connecting": "连接中…", "conn.online": "已连接", "conn.reconnecting": "重新连接中…",
      "conn.offline": "已断开", "conn.signed-out": "已退出",
      "event.queued": "正在排队", "event.assigned": "已分配给 {name}", "event.transferred": "已转接",
      "event.closed": "会话已结束", "event.wrapped_up": "已小结 {code}", "event.note": "内部备注",
      "event.read": "已读", "event.file": "下载 {name}", "typing": "客户正在输入…",
      "error": "错误：{code}", "customer": "客户", "you": "我",
    },
  });

  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "kefu.agent.token";
  const DRAFT_PREFIX = "kefu.agent.draft.";
  const SELECTED_KEY = "kefu.agent.selected";
  let token = sessionStorage.getItem(TOKEN_KEY);
  let me = null;
  let conn = null;
  let connState = "offline";
  let presence = null;          // last `status` frame
  let wrapUpEnds = 0;
  let desiredStatus = null;     // what the agent chose; said again after a reconnect
  let view = "mine";
  // Read-only lists from GET /api/v1/conversations: what waits, and everything open in my departments.
  const overview = {queued: [], departments: []};
  let overviewLoading = false;

  async function refreshOverview() {
    if (!me || overviewLoading || (view !== "queued" && view !== "departments")) return;
    overviewLoading = true;
    const wanted = view;
    try {
      const body = await api("GET", "/api/v1/conversations?view=" + wanted);
      overview[wanted] = body.conversations;
      if (wanted === "departments") overview.queued = body.conversations.filter((c) => c.status === "queued" || c.status === "offered");
    } catch (error) {
      showError(t("overview.failed", {error: error.message}));
    } finally {
      overviewLoading = false;
    }
    scheduleRender();
  }
  let selected = null;
  const conversations = new Map(); // id -> conversation
  const offers = new Map();        // offer id -> offer frame + expiresAt
  const blobs = new Map();         // attachment id -> Promise<blob URL>
  const histories = new Map();     // customer id -> Promise<list>
  const contacts = new Map();      // customer id -> {phone, email} as the server shows them to this agent (masked or not)
  let departments = [];
  let audio = null;
  let typingSent = 0;
  let renderQueued = false;

  // -- helpers -----------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  async function api(method, path, body, contentType) {
    const headers = {"Authorization": "Bearer " + token};
    if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
    const response = await fetch(path, {method, headers, body: body === undefined || contentType ? body : JSON.stringify(body)});
    if (!response.ok) throw new Error((await response.text()) || String(response.status));
    return response.status === 204 ? null : response.json();
  }

  function conversation(id) {
    let conv = conversations.get(id);
    if (!conv) {
      conv = {id, events: new Map(), nodes: new Map(), clientIds: new Set(), mine: false, state: null, unread: 0,
              lastSeq: 0, readSent: 0, customerRead: 0, customerTypingUntil: 0, customer: {}};
      conversations.set(id, conv);
    }
    return conv;
  }

  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; render(); });
  }

  function secondsLeft(until) { return Math.max(0, Math.ceil((until - Date.now()) / 1000)); }

  // -- sign in and out -----------------------------------------------------------------------------

  async function signIn(event) {
    event.preventDefault();
    $("signin-error").textContent = "";
    try {
      const response = await fetch("/api/v1/auth/sign-in", {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({account: $("signin-account").value.trim(), email: $("signin-email").value.trim(), password: $("signin-password").value})});
      if (response.status === 401 || response.status === 400) { $("signin-error").textContent = t("signin.failed"); return; }
      if (response.status === 429 || response.status === 503) {
        const refused = Kefu.refusalText(((await response.json().catch(() => ({}))).error || {}).code, response.headers.get("Retry-After"));
        if (refused) { $("signin-error").textContent = refused; return; }
      }
      if (!response.ok) throw new Error(String(response.status));
      const body = await response.json();
      token = body.token;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("signin-password").value = "";
      start(body.user);
    } catch (error) {
      $("signin-error").textContent = t("signin.error", {error: error.message});
    }
  }

  async function signOut() {
    try { await api("POST", "/api/v1/auth/sign-out"); } catch (error) { /* already gone */ }
    stopSession();
  }

  function stopSession() {
    if (conn) conn.stop();
    conn = null;
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(SELECTED_KEY);
    conversations.clear(); offers.clear(); selected = null; presence = null; desiredStatus = null;
    $("workbench").hidden = true; $("signin").hidden = false; $("sign-out").hidden = true; $("notify-enable").hidden = true;
    $("me-name").textContent = "";
    setConnection("offline");
  }

  // The workbench is for users who may handle conversations (whatever their role is called).
  const NEEDED = ["conversations.handle"];

  function start(user) {
    if (!Kefu.holdsAny(user, NEEDED)) {
      stopSession();
      $("signin-error").textContent = Kefu.pageForbiddenText(NEEDED);
      return;
    }
    me = user;
    $("signin").hidden = true; $("workbench").hidden = false; $("sign-out").hidden = false;
    $("notify-enable").hidden = !("Notification" in window) || Notification.permission !== "default";
    $("me-name").textContent = user.display_name || user.email;
    conn = new Kefu.KefuConnection({url: Kefu.wsUrl("/ws/agent"), token, storageKey: "kefu.agent.pending." + user.id,
                                    onFrame, onState: setConnection});
    conn.start();
    api("GET", "/api/v1/queues").then((body) => {
      departments = [...new Set(body.queues.map((q) => q.department_id).filter(Boolean))];
      renderDepartments();
    }).catch(() => {});
    render();
  }

  function setConnection(state) {
    connState = state;
    const node = $("connection");
    node.dataset.state = state;
    node.textContent = t("conn." + state);
    if (state === "signed-out" && token) stopSession();
  }

  // -- frames ---------------------------------------------------------------------------------------

  function onFrame(frame) {
    switch (frame.type) {
      case "welcome":
        if (desiredStatus) conn.sendRaw(desiredStatus);
        break;
      case "conversations":
        for (const item of frame.conversations) {
          const known = conversations.has(item.conversation_id);
          const conv = conversation(item.conversation_id);
          if (!known) conv.historySeq = item.last_seq; // shown before this page load: not counted as unread
          conv.mine = true;
          conv.state = item.state;
          Object.assign(conv.customer, {customer_id: item.customer_id, channel: item.channel,
            display_name: item.display_name || conv.customer.display_name, topic: item.topic || conv.customer.topic});
          if (!conn.following.has(conv.id)) conn.follow(conv.id);
        }
        if (!selected) {
          const previous = sessionStorage.getItem(SELECTED_KEY);
          if (previous && conversations.has(previous)) select(previous);
        }
        break;
      case "status":
        presence = frame;
        wrapUpEnds = frame.status === "wrap_up" && frame.wrap_up_seconds ? Date.now() + frame.wrap_up_seconds * 1000 : 0;
        break;
      case "offer": {
        offers.set(frame.offer_id, Object.assign({}, frame, {expiresAt: Date.now() + frame.expires_in_seconds * 1000}));
        const conv = conversation(frame.conversation_id);
        Object.assign(conv.customer, frame.customer);
        alertOffer(frame);
        break;
      }
      case "offer.revoked":
        offers.delete(frame.offer_id);
        break;
      case "event":
        onEvent(frame);
        break;
      case "typing":
        if (frame.role === "customer") conversation(frame.conversation_id).customerTypingUntil = frame.active ? Date.now() + 10000 : 0;
        break;
      case "read":
        if (frame.role === "customer") {
          const conv = conversation(frame.conversation_id);
          conv.customerRead = Math.max(conv.customerRead, frame.seq);
        }
        break;
      case "error":
        if (frame.code === "offer_gone") for (const [id, offer] of offers) if (offer.offer_id === frame.ref) offers.delete(id);
        showError(t("error", {code: frame.code}));
        break;
      default:
        break;
    }
    scheduleRender();
  }

  function onEvent(event) {
    const conv = conversation(event.conversation_id);
    if (conv.events.has(event.seq)) return;
    conv.events.set(event.seq, event);
    conv.lastSeq = Math.max(conv.lastSeq, event.seq);
    if (event.client_id) conv.clientIds.add(event.client_id);
    switch (event.kind) {
      case "assigned":
        conv.mine = me && event.agent_id === me.id;
        conv.state = "assigned";
        for (const [id, offer] of offers) if (offer.conversation_id === conv.id) offers.delete(id);
        break;
      case "transferred":
        if (event.to_department_id) conv.mine = false;
        break;
      case "queued":
        conv.state = "queued";
        break;
      case "closed":
        conv.state = conv.mine ? "wrap_up" : "closed";
        break;
      case "wrapped_up":
        conv.state = "closed";
        break;
      case "message":
        if (event.sender.role === "customer") {
          conv.customerTypingUntil = 0;
          const old = conv.historySeq && event.seq <= conv.historySeq;
          if (!old && (selected !== conv.id || document.visibilityState !== "visible")) conv.unread += 1;
        }
        break;
      default:
        break;
    }
  }

  function showError(text) {
    $("chat-error").textContent = text;
  }

  // -- offers: notification and sound ------------------------------------------------------------

  function unlockAudio() {
    if (audio) return;
    const Context = window.AudioContext || window.webkitAudioContext;
    if (Context) audio = new Context();
  }

  function beep() {
    if (!audio || audio.state !== "running") return;
    const oscillator = audio.createOscillator();
    const gain = audio.createGain();
    oscillator.frequency.value = 880;
    gain.gain.value = 0.1;
    oscillator.connect(gain).connect(audio.destination);
    oscillator.start();
    oscillator.stop(audio.currentTime + 0.15);
  }

  function alertOffer(offer) {
    beep();
    if ("Notification" in window && Notification.permission === "granted" && document.visibilityState !== "visible") {
      try { new Notification(t("notify.offer"), {body: offer.customer.display_name || offer.customer.preview || ""}); } catch (error) { /* not allowed here */ }
    }
  }

  // -- rendering -------------------------------------------------------------------------------------

  function render() {
    if (!me) return;
    renderStatus();
    renderList();
    renderChat();
    renderCustomer();
  }

  function renderStatus() {
    const status = presence ? presence.status : "offline";
    let text = t("status." + status);
    if (presence && presence.reason) text += " (" + (presence.reason === "missed_offers" ? t("status.missed_offers") : presence.reason) + ")";
    $("status-current").textContent = text;
    $("capacity").textContent = presence ? presence.active_conversations + "/" + presence.capacity : "0/0";
    for (const button of document.querySelectorAll("[data-status]")) button.setAttribute("aria-pressed", String(button.dataset.status === status));
    $("wrap-up").hidden = !(status === "wrap_up" && wrapUpEnds);
    $("wrap-up").textContent = t("status.wrap_up_left", {seconds: secondsLeft(wrapUpEnds)});
  }

  function customerName(conv) {
    return conv.customer.display_name || t("customer") + " " + (conv.customer.customer_id || conv.id).slice(0, 8);
  }

  // List items are kept between renders (keyed), so a click is never lost to a re-render
  // and keyboard focus stays where it was; only their changing parts are updated.
  const listNodes = new Map(); // key -> {li, signature}

  function keyed(key, signature, build) {
    let entry = listNodes.get(key);
    if (!entry || entry.signature !== signature) {
      const li = build();
      if (entry && entry.li.contains(document.activeElement)) {
        const focusKey = document.activeElement.dataset.key;
        entry.li.replaceWith(li);
        const again = focusKey && li.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
        if (again) again.focus();
      }
      entry = {li, signature};
      listNodes.set(key, entry);
    }
    return entry.li;
  }

  function renderList() {
    const mine = [...conversations.values()].filter((c) => c.mine && c.state !== "closed");
    $("view-mine").textContent = t("views.mine", {count: mine.length});
    $("view-offers").textContent = t("views.offers", {count: offers.size});
    $("view-mine").setAttribute("aria-pressed", String(view === "mine"));
    $("view-offers").setAttribute("aria-pressed", String(view === "offers"));
    $("view-queued").textContent = t("views.queued", {count: overview.queued.length});
    $("view-departments").textContent = t("views.departments");
    $("view-queued").setAttribute("aria-pressed", String(view === "queued"));
    $("view-departments").setAttribute("aria-pressed", String(view === "departments"));
    const wanted = [];
    if (view === "queued" || view === "departments") {
      const now = Date.now();
      for (const item of overview[view]) {
        const minutes = Math.max(0, Math.floor((now - Date.parse(item.created_at)) / 60000));
        const details = [item.queue_name || item.department_name, item.topic,
          item.agent_name ? t("overview.with", {agent: item.agent_name}) : t("overview.waiting", {minutes})];
        const signature = [Kefu.language(), item.status, item.agent_name, minutes].join("|");
        wanted.push(keyed("v:" + view + ":" + item.id, signature, () => el("li", {class: "overview", "data-conversation": item.id},
          el("strong", {}, item.customer_name || t("customer.anonymous")),
          el("span", {class: "meta"}, details.filter(Boolean).join(" · ")))));
      }
      if (!overview[view].length) wanted.push(keyed("empty", Kefu.language(), () => el("li", {class: "empty"}, t("list.empty"))));
    } else if (view === "mine") {
      for (const conv of mine) {
        const signature = [Kefu.language(), customerName(conv), conv.state, conv.unread, selected === conv.id].join("|");
        wanted.push(keyed("c:" + conv.id, signature, () => el("li", {},
          el("button", {type: "button", class: "conversation", "data-key": "c:" + conv.id, "data-conversation": conv.id,
                        "aria-current": selected === conv.id ? "true" : null, onclick: () => select(conv.id)},
            el("span", {class: "name"}, customerName(conv)),
            conv.state === "wrap_up" ? el("span", {class: "badge"}, t("status.wrap_up")) : null,
            conv.unread ? el("span", {class: "unread", "aria-label": t("list.unread", {count: conv.unread})}, String(conv.unread)) : null))));
      }
      if (!mine.length) wanted.push(keyed("empty", Kefu.language(), () => el("li", {class: "empty"}, t("list.empty"))));
    } else {
      for (const offer of offers.values()) {
        const customer = offer.customer || {};
        const li = keyed("o:" + offer.offer_id, Kefu.language(), () => el("li", {class: "offer", "data-offer": offer.offer_id},
          el("strong", {}, customer.display_name || customer.customer_id || ""),
          el("span", {class: "meta"}, [customer.channel, customer.topic].filter(Boolean).join(" · ")),
          customer.preview ? el("q", {}, customer.preview) : null,
          el("span", {class: "countdown"}),
          el("span", {class: "offer-actions"},
            el("button", {type: "button", class: "accept", "data-key": "a:" + offer.offer_id, onclick: () => accept(offer)}, t("offer.accept")),
            el("button", {type: "button", class: "decline", "data-key": "d:" + offer.offer_id, onclick: () => decline(offer)}, t("offer.decline")))));
        li.querySelector(".countdown").textContent = t("offer.expires", {seconds: secondsLeft(offer.expiresAt)});
        wanted.push(li);
      }
      if (!offers.size) wanted.push(keyed("empty", Kefu.language(), () => el("li", {class: "empty"}, t("list.empty"))));
    }
    const list = $("conversation-list");
    const current = [...list.children];
    if (current.length !== wanted.length || current.some((node, i) => node !== wanted[i])) {
      const focusKey = list.contains(document.activeElement) ? document.activeElement.dataset.key : null;
      list.replaceChildren(...wanted);
      const again = focusKey && list.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
      if (again) again.focus();
    }
    for (const key of listNodes.keys()) {
      if (key === "empty") continue;
      if (key.startsWith("v:")) {
        if (!wanted.some((node) => listNodes.get(key) && listNodes.get(key).li === node)) listNodes.delete(key);
        continue;
      }
      const id = key.slice(2);
      if (key.startsWith("o:") ? !offers.has(id) : !conversations.has(id)) listNodes.delete(key);
    }
  }

  function accept(offer) {
    if (!conn.sendRaw({type: "offer.accept", offer_id: offer.offer_id})) { showError(t("conn." + connState)); return; }
    offers.delete(offer.offer_id);
    view = "mine";
    select(offer.conversation_id);
  }

  function decline(offer) {
    if (!conn.sendRaw({type: "offer.decline", offer_id: offer.offer_id})) { showError(t("conn." + connState)); return; }
    offers.delete(offer.offer_id);
    scheduleRender();
  }

  function select(id) {
    if (selected && selected !== id) sendTyping(false);
    selected = id;
    sessionStorage.setItem(SELECTED_KEY, id);
    const conv = conversation(id);
    conv.unread = 0;
    $("composer-text").value = localStorage.getItem(DRAFT_PREFIX + id) || "";
    $("events").replaceChildren();
    $("canned").hidden = true;
    showError("");
    render();
    $("composer-text").focus();
  }

  function attachmentUrl(id) {
    if (!blobs.has(id)) {
      blobs.set(id, fetch("/api/v1/attachments/" + encodeURIComponent(id), {headers: {"Authorization": "Bearer " + token}})
        .then((response) => { if (!response.ok) throw new Error(String(response.status)); return response.blob(); })
        .then((blob) => URL.createObjectURL(blob)));
    }
    return blobs.get(id);
  }

  function mediaNode(event) {
    const kind = event.message_kind;
    const tag = {image: "img", voice: "audio", video: "video"}[kind];
    let node;
    if (tag) {
      node = el(tag, {class: "media", alt: tag === "img" ? (event.text || kind) : null, controls: tag !== "img"});
      attachmentUrl(event.attachment_id).then((url) => { node.src = url; }).catch(() => { node.replaceWith(el("span", {class: "error"}, t("error", {code: "attachment"}))); });
    } else {
      node = el("a", {href: "#", class: "file"}, t("event.file", {name: event.text || event.attachment_id}));
      attachmentUrl(event.attachment_id).then((url) => { node.href = url; node.download = event.text || "file"; }).catch(() => {});
    }
    return node;
  }

  function eventNode(event) {
    const when = new Date(event.at).toLocaleTimeString();
    if (event.kind === "message") {
      const mine = event.sender.role === "agent";
      const body = [];
      if (event.message_kind !== "text") body.push(mediaNode(event));
      if (event.text && event.message_kind !== "file") body.push(el("p", {class: "text"}, event.text));
      return el("li", {class: "message " + (mine ? "outgoing" : "incoming"), "data-seq": String(event.seq)},
        el("span", {class: "who"}, event.sender.display_name || (mine ? t("you") : t("customer"))),
        ...body,
        el("span", {class: "when"}, when),
        mine ? el("span", {class: "receipt"}) : null);
    }
    if (event.kind === "note") {
      return el("li", {class: "note", "data-seq": String(event.seq)},
        el("span", {class: "who"}, t("event.note") + " · " + (event.sender.display_name || event.sender.role)),
        el("p", {class: "text"}, event.text), el("span", {class: "when"}, when));
    }
    const texts = {
      queued: () => t("event.queued"),
      assigned: () => t("event.assigned", {name: event.sender.display_name || event.agent_id}),
      transferred: () => t("event.transferred") + " → " + (event.to_department_id || event.to_agent_id || "") + (event.text ? ": " + event.text : ""),
      closed: () => t("event.closed") + (event.reason ? " (" + event.reason + ")" : ""),
      wrapped_up: () => t("event.wrapped_up", {code: event.wrap_up_code || event.reason || ""}),
      system: () => event.text,
    };
    if (!texts[event.kind]) return null; // unknown kinds are counted, not shown
    return el("li", {class: "notice", "data-seq": String(event.seq)}, texts[event.kind](), " · ", when);
  }

  function renderChat() {
    const conv = selected ? conversations.get(selected) : null;
    $("composer").hidden = !conv;
    $("actions").hidden = !conv || !conv.mine;
    $("chat-title").textContent = conv ? t("chat.with", {name: customerName(conv)}) : t("chat.none");
    if (!conv) { $("events").replaceChildren(); $("typing").textContent = ""; return; }
    const list = $("events");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const seqs = [...conv.events.keys()].sort((a, b) => a - b);
    const wanted = [];
    for (const seq of seqs) {
      let node = conv.nodes.get(seq);
      if (node === undefined) { node = eventNode(conv.events.get(seq)); conv.nodes.set(seq, node); }
      if (node) {
        const receipt = node.querySelector(".receipt");
        if (receipt) receipt.textContent = seq <= conv.customerRead ? "✓ " + t("event.read") : "";
        wanted.push(node);
      }
    }
    if (conn) {
      for (const frame of Object.values(conn.pending)) {
        if (frame.conversation_id !== conv.id || conv.clientIds.has(frame.client_id)) continue;
        if (frame.type !== "message.send" && frame.type !== "note.add") continue;
        wanted.push(el("li", {class: (frame.type === "note.add" ? "note" : "message outgoing") + " pending"},
          el("p", {class: "text"}, frame.text || frame.kind), el("span", {class: "when"}, t("composer.sending"))));
      }
    }
    const current = [...list.children];
    if (current.length !== wanted.length || current.some((node, i) => node !== wanted[i])) list.replaceChildren(...wanted);
    if (atBottom || wanted.length !== current.length) list.scrollTop = list.scrollHeight;
    $("typing").textContent = conv.customerTypingUntil > Date.now() ? t("typing") : "";
    if (conv.lastSeq > conv.readSent && document.visibilityState === "visible" && conn && conn.sendRaw({type: "read", conversation_id: conv.id, seq: conv.lastSeq})) {
      conv.readSent = conv.lastSeq;
    }
  }

  function renderCustomer() {
    const conv = selected ? conversations.get(selected) : null;
    const info = $("customer-info");
    info.replaceChildren();
    const history = $("customer-history");
    if (!conv) { history.replaceChildren(); return; }
    const c = conv.customer;
    const contact = c.customer_id ? contacts.get(c.customer_id) : undefined;
    if (c.customer_id && contact === undefined) {
      contacts.set(c.customer_id, null);
      api("GET", "/api/v1/customers/" + encodeURIComponent(c.customer_id))
        .then((body) => { contacts.set(c.customer_id, {phone: body.phone, email: body.email}); scheduleRender(); })
        .catch(() => {});
    }
    const rows = [["name", c.display_name], ["channel", c.channel], ["level", c.level], ["topic", c.topic]];
    if (contact) rows.push(["phone", contact.phone], ["email", contact.email]);
    for (const [key, value] of rows) {
      info.append(el("dt", {}, t("customer." + key)), el("dd", {}, value === undefined || value === null ? "—" : String(value)));
    }
    if (!c.customer_id) { history.replaceChildren(); return; }
    if (!histories.has(c.customer_id)) {
      histories.set(c.customer_id, api("GET", "/api/v1/customers/" + encodeURIComponent(c.customer_id) + "/conversations")
        .then((body) => body.conversations).catch(() => []));
      histories.get(c.customer_id).then(() => scheduleRender());
    }
    const shownFor = conv.id;
    histories.get(c.customer_id).then((items) => {
      if (selected !== shownFor) return;
      const earlier = items.filter((item) => item.id !== shownFor);
      history.replaceChildren(...(earlier.length ? earlier.map((item) => el("li", {},
        new Date(item.created_at).toLocaleString() + " · " + (item.topic || "—") + " · " + item.status +
        (item.agent_name ? " · " + item.agent_name : "") + (item.wrap_up_code ? " · " + item.wrap_up_code : ""))) : [el("li", {}, t("customer.none"))]));
    });
  }

  function renderDepartments() {
    const select = $("transfer-department");
    const value = select.value;
    select.replaceChildren(el("option", {value: ""}, t("transfer.none")), ...departments.map((id) => el("option", {value: id}, id)));
    select.value = value;
  }

  // -- composing ------------------------------------------------------------------------------------

  function sendTyping(active) {
    if (!selected || !conn) return;
    const conv = conversations.get(selected);
    if (!conv || !conv.mine || conv.state !== "assigned") return;
    if (active && Date.now() - typingSent < 3000) return;
    typingSent = active ? Date.now() : 0;
    conn.sendRaw({type: "typing", conversation_id: selected, active});
  }

  function sendComposer() {
    const textarea = $("composer-text");
    const text = textarea.value.trim();
    if (!selected || !text || !conn) return;
    const note = $("note-mode").checked;
    conn.send(note ? {type: "note.add", conversation_id: selected, text}
                   : {type: "message.send", conversation_id: selected, kind: "text", text});
    textarea.value = "";
    localStorage.removeItem(DRAFT_PREFIX + selected);
    sendTyping(false);
    $("canned").hidden = true;
    scheduleRender();
  }

  async function upload(file) {
    if (!selected || !file) return;
    const conversationId = selected;
    showError("");
    try {
      const stored = await api("POST", "/api/v1/attachments?filename=" + encodeURIComponent(file.name), file, file.type || "application/octet-stream");
      const kind = ["image", "voice", "video", "file"].includes(stored.kind) ? stored.kind : "file";
      conn.send({type: "message.send", conversation_id: conversationId, kind, attachment_id: stored.id, text: file.name.slice(0, 8000) || undefined});
      scheduleRender();
    } catch (error) {
      showError(t("composer.upload_failed", {error: error.message}));
    }
  }

  async function openCanned(query) {
    const box = $("canned");
    box.hidden = false;
    $("canned-search").value = query;
    let items = [];
    try { items = (await api("GET", "/api/v1/canned-responses?q=" + encodeURIComponent(query))).canned_responses; } catch (error) { items = []; }
    if ($("canned-search").value !== query) return; // a newer search is on its way
    const list = $("canned-list");
    list.replaceChildren(...(items.length ? items.map((item) => el("li", {role: "option"},
      el("button", {type: "button", onclick: () => chooseCanned(item)}, "/" + item.shortcut + " — " + item.title))) : [el("li", {}, t("canned.empty"))]));
  }

  function chooseCanned(item) {
    const textarea = $("composer-text");
    textarea.value = /^\/\S*$/.test(textarea.value) ? item.body : (textarea.value ? textarea.value + " " : "") + item.body;
    if (selected) localStorage.setItem(DRAFT_PREFIX + selected, textarea.value);
    $("canned").hidden = true;
    textarea.focus();
  }

  // -- wiring -----------------------------------------------------------------------------------------

  function init() {
    Kefu.bindSwitcher($("language"));
    Kefu.apply();
    setConnection("offline");
    window.addEventListener("kefu:language", () => { setConnection(connState); renderDepartments(); for (const c of conversations.values()) c.nodes.clear(); $("events").replaceChildren(); render(); });
    $("signin-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", signOut);
    $("notify-enable").addEventListener("click", () => {
      Notification.requestPermission().then(() => { $("notify-enable").hidden = Notification.permission !== "default"; });
    });
    document.addEventListener("pointerdown", unlockAudio, {once: true});
    document.addEventListener("keydown", unlockAudio, {once: true});
    for (const button of document.querySelectorAll("[data-status]")) {
      button.addEventListener("click", () => {
        const frame = {type: "status.set", status: button.dataset.status};
        const reason = $("break-reason").value.trim();
        if (frame.status === "break" && reason) frame.reason = reason;
        desiredStatus = frame;
        if (conn) conn.sendRaw(frame);
      });
    }
    for (const button of document.querySelectorAll("[data-view]")) {
      button.addEventListener("click", () => { view = button.dataset.view; render(); refreshOverview(); });
    }
    setInterval(refreshOverview, 5000);
    const textarea = $("composer-text");
    textarea.addEventListener("input", () => {
      if (!selected) return;
      localStorage.setItem(DRAFT_PREFIX + selected, textarea.value);
      sendTyping(textarea.value.length > 0);
      const slash = /^\/(\S*)$/.exec(textarea.value);
      if (slash) openCanned(slash[1]); else if (!$("canned").hidden && !textarea.value) $("canned").hidden = true;
    });
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); sendComposer(); }
      if (event.key === "Escape") $("canned").hidden = true;
    });
    $("composer").addEventListener("submit", (event) => { event.preventDefault(); sendComposer(); });
    $("canned-open").addEventListener("click", () => { openCanned(""); $("canned-search").focus(); });
    $("canned-search").addEventListener("input", () => openCanned($("canned-search").value));
    $("canned").addEventListener("keydown", (event) => { if (event.key === "Escape") { $("canned").hidden = true; textarea.focus(); } });
    $("attach").addEventListener("change", () => { const file = $("attach").files[0]; $("attach").value = ""; upload(file); });
    $("transfer-form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (!selected) return;
      const department = $("transfer-department").value;
      const agent = $("transfer-agent").value.trim();
      if (!department === !agent) { showError(t("transfer.missing")); return; }
      const frame = {type: "transfer", conversation_id: selected};
      if (agent) frame.to_agent_id = agent; else frame.to_department_id = department;
      const note = $("transfer-note").value.trim();
      if (note) frame.note = note;
      conn.send(frame);
      $("transfer-agent").value = ""; $("transfer-note").value = "";
    });
    $("close-form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (!selected) return;
      const frame = {type: "conversation.close", conversation_id: selected};
      const code = $("wrap-up-code").value.trim();
      if (code) frame.wrap_up_code = code;
      conn.send(frame);
      $("wrap-up-code").value = "";
    });
    setInterval(() => { if (me && (offers.size || wrapUpEnds || selected)) render(); }, 1000);

    if (token) {
      api("GET", "/api/v1/me").then(start).catch(() => stopSession());
    }
  }

  init();
})();
