// kefu's customer chat widget. Embed it on any site with one script tag:
//
//   <script src="https://kefu.example/widget.js" data-account="acme-support" async></script>
//
// Optional: data-department (a department id), data-topic, data-lang ("en" or "zh-CN").
// The script loads /static/i18n.js and /static/kefu-client.js from its own origin, then adds
// a floating button that opens a chat panel, inside a shadow DOM so the host page's styles and
// the widget's do not mix. The visitor token is kept in localStorage (a reload is the same
// customer); open conversations are resumed and their history shown again.
(function () {
  "use strict";

  const script = document.currentScript;
  if (!script || window.__kefuWidget) return;
  window.__kefuWidget = true;
  const origin = new URL(script.src, window.location.href).origin;
  const config = {
    account: script.dataset.account,
    department: script.dataset.department || null,
    topic: script.dataset.topic || null,
    lang: script.dataset.lang || null,
  };

  function load(path) {
    return new Promise((resolve, reject) => {
      const element = document.createElement("script");
      element.src = origin + path;
      element.onload = resolve;
      element.onerror = () => reject(new Error("kefu widget: cannot load " + path));
      document.head.appendChild(element);
    });
  }

  async function boot() {
    if (!config.account) {
      console.warn("kefu widget: the script tag needs data-account");
      return;
    }
    if (!(window.Kefu && window.Kefu.t)) await load("/static/i18n.js");
    if (!(window.Kefu && window.Kefu.KefuConnection)) await load("/static/kefu-client.js");
    new Widget().mount();
  }

  const STRINGS = {
    "en": {
      "widget.open": "Chat with us",
      "widget.close": "Close chat",
      "widget.title": "Customer service",
      "widget.language": "Language",
      "widget.input": "Type a message",
      "widget.send": "Send",
      "widget.attach": "Attach a file",
      "widget.messages": "Messages",
      "widget.welcome": "Hello! Write us a message and an agent will answer.",
      "widget.state.connecting": "Connecting…",
      "widget.state.online": "Connected",
      "widget.state.reconnecting": "Reconnecting…",
      "widget.state.offline": "Offline",
      "widget.state.signed-out": "Session expired",
      "widget.queue": "You are number {position} in the queue.",
      "widget.queue.wait": "You are number {position} in the queue, about {minutes} min wait.",
      "widget.joined": "{name} joined the conversation",
      "widget.agent": "Agent",
      "widget.you": "You",
      "widget.typing": "{name} is typing…",
      "widget.sending": "Sending…",
      "widget.sent": "Sent",
      "widget.read": "Read",
      "widget.closed": "The conversation ended. Write to start a new one.",
      "widget.transferred": "You are being transferred to another agent.",
      "widget.uploading": "Uploading {name}…",
      "widget.upload.failed": "Could not upload {name}.",
      "widget.image": "Image",
      "widget.file": "File",
      "widget.error": "The message could not be sent ({code}).",
    },
    "zh-CN": {
      "widget.open": "在线客服",
      "widget.close": "关闭对话",
      "widget.title": "客户服务",
      "widget.language": "语言",
      "widget.input": "输入消息",
      "widget.send": "发送",
      "widget.attach": "添加附件",
      "widget.messages": "消息",
      "widget.welcome": "您好！请留言，客服会尽快回复。",
      "widget.state.connecting": "正在连接…",
      "widget.state.online": "已连接",
      "widget.state.reconnecting": "正在重新连接…",
      "widget.state.offline": "离线",
      "widget.state.signed-out": "会话已过期",
      "widget.queue": "您在队列中排第 {position} 位。",
      "widget.queue.wait": "您排在第 {position} 位，预计等待约 {minutes} 分钟。",
      "widget.joined": "{name} 已加入对话",
      "widget.agent": "客服",
      "widget.you": "我",
      "widget.typing": "{name} 正在输入…",
      "widget.sending": "发送中…",
      "widget.sent": "已发送",
      "widget.read": "已读",
      "widget.closed": "对话已结束。发送消息即可开始新的对话。",
      "widget.transferred": "正在为您转接其他客服。",
      "widget.uploading": "正在上传 {name}…",
      "widget.upload.failed": "无法上传 {name}。",
      "widget.image": "图片",
      "widget.file": "文件",
      "widget.error": "消息发送失败（{code}）。",
    },
  };

  const PAPERCLIP = '<svg width="18" height="18" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false"><path d="M21.4 11.1l-9.2 9.2a6 6 0 0 1-8.5-8.5l9.2-9.2a4 4 0 0 1 5.7 5.7l-9.2 9.2a2 2 0 0 1-2.8-2.8l8.5-8.5"/></svg>';

  const CSS = `
    :host { all: initial; }
    * { box-sizing: border-box; font-family: system-ui, -apple-system, "PingFang SC", "Microsoft YaHei", "WenQuanYi Micro Hei", sans-serif; }
    .kw-launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; border: 0; border-radius: 28px;
      background: #1463ff; color: #fff; padding: 14px 20px; font-size: 15px; cursor: pointer; box-shadow: 0 4px 14px rgba(0,0,0,.25); }
    .kw-launcher:focus-visible, button:focus-visible, select:focus-visible, textarea:focus-visible { outline: 3px solid #ffbf47; outline-offset: 2px; }
    .kw-panel { position: fixed; right: 20px; bottom: 84px; z-index: 2147483001; width: 370px; height: min(600px, calc(100vh - 110px));
      background: #fff; color: #1d2330; border-radius: 12px; box-shadow: 0 8px 30px rgba(0,0,0,.3); display: flex; flex-direction: column; overflow: hidden; font-size: 14px; }
    .kw-panel[hidden] { display: none; }
    .kw-header { background: #1463ff; color: #fff; padding: 10px 12px; display: flex; align-items: center; gap: 8px; }
    .kw-header h2 { font-size: 16px; margin: 0; flex: 1; }
    .kw-header select { font-size: 13px; border-radius: 4px; border: 0; padding: 2px; }
    .kw-header .kw-close { background: transparent; border: 0; color: #fff; font-size: 22px; cursor: pointer; line-height: 1; padding: 2px 6px; }
    .kw-visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
    .kw-conn { font-size: 12px; padding: 4px 12px; background: #eef2f8; display: flex; align-items: center; gap: 6px; }
    .kw-dot { width: 8px; height: 8px; border-radius: 50%; background: #999; }
    .kw-conn[data-state="online"] .kw-dot { background: #1a9c4b; }
    .kw-conn[data-state="reconnecting"] .kw-dot, .kw-conn[data-state="connecting"] .kw-dot { background: #e8a317; }
    .kw-conn[data-state="offline"] .kw-dot, .kw-conn[data-state="signed-out"] .kw-dot { background: #d33; }
    .kw-queue { font-size: 13px; padding: 6px 12px; background: #fff7e0; border-bottom: 1px solid #f0e2b0; }
    .kw-queue:empty { display: none; }
    .kw-log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 8px; background: #f7f8fa; }
    .kw-msg { max-width: 80%; padding: 8px 10px; border-radius: 10px; white-space: pre-wrap; overflow-wrap: anywhere; }
    .kw-msg.kw-own { align-self: flex-end; background: #1463ff; color: #fff; border-bottom-right-radius: 2px; }
    .kw-msg.kw-agent { align-self: flex-start; background: #fff; border: 1px solid #dde2ea; border-bottom-left-radius: 2px; }
    .kw-name { display: block; font-size: 12px; font-weight: 600; margin-bottom: 2px; color: #45506a; }
    .kw-status { display: block; font-size: 11px; opacity: .8; text-align: right; margin-top: 2px; }
    .kw-msg img { max-width: 100%; max-height: 220px; border-radius: 6px; display: block; }
    .kw-msg a { color: inherit; }
    .kw-msg svg, .kw-attach svg { vertical-align: middle; }
    .kw-note { align-self: center; font-size: 12px; color: #5c6579; text-align: center; background: #e9edf3; border-radius: 10px; padding: 4px 10px; max-width: 90%; }
    .kw-typing { font-size: 12px; color: #5c6579; padding: 2px 12px; min-height: 18px; background: #f7f8fa; }
    .kw-form { display: flex; gap: 6px; padding: 8px; border-top: 1px solid #dde2ea; align-items: flex-end; }
    .kw-form textarea { flex: 1; resize: none; font-size: 15px; padding: 8px; border: 1px solid #c5ccd8; border-radius: 8px; min-height: 40px; max-height: 120px; }
    .kw-form button { border: 0; border-radius: 8px; padding: 0 12px; height: 40px; font-size: 15px; cursor: pointer; }
    .kw-send { background: #1463ff; color: #fff; }
    .kw-attach { background: #eef2f8; color: #1d2330; }
    @media (max-width: 600px) {
      .kw-panel { inset: 0; width: 100%; height: 100%; border-radius: 0; right: 0; bottom: 0; }
      .kw-form textarea { font-size: 16px; }
    }
  `;

  function h(tag, attributes, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") element.className = value;
      else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
      else element.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) element.append(child);
    return element;
  }

  class Widget {
    constructor() {
      this.prefix = "kefu.widget." + config.account + ".";
      this.conversationId = localStorage.getItem(this.prefix + "conversation") || null;
      this.starting = null;         // client_id of a conversation.start not yet acked
      this.waiting = [];            // messages typed before the conversation exists
      this.local = new Map();       // client_id -> element of an own message
      this.ownBySeq = [];           // [{seq, element}] own messages, for read receipts
      this.agentRead = {};          // conversation id -> seq the agent has read
      this.lastAgentSeq = {};       // conversation id -> last agent message seq
      this.sentRead = {};
      this.labels = [];             // [{element, key, values}] dynamic strings to translate again
      this.typingTimer = null;
      this.typingSentAt = 0;
      this.state = "connecting";
    }

    t(key, values) { return window.Kefu.t(key, values); }

    // An element whose text is Kefu.t(key, values), translated again when the language changes.
    label(element, key, values) {
      element.textContent = this.t(key, values);
      this.labels.push({element, key, values});
      return element;
    }

    mount() {
      window.Kefu.register(STRINGS);
      if (config.lang && !localStorage.getItem("kefu.language")) window.Kefu.setLanguage(config.lang);
      const host = h("div", {id: "kefu-widget"});
      document.body.appendChild(host);
      const root = host.attachShadow({mode: "open"});
      this.root = root;
      root.append(h("style", {}, CSS));

      this.launcher = h("button", {class: "kw-launcher", type: "button", "aria-expanded": "false", "aria-controls": "kw-panel",
        "data-i18n": "widget.open", onclick: () => this.toggle()});
      this.language = h("select", {id: "kw-language", "data-i18n-aria-label": "widget.language"});
      this.connection = h("div", {class: "kw-conn", role: "status", "data-state": "connecting"}, h("span", {class: "kw-dot", "aria-hidden": "true"}));
      this.connectionText = h("span", {});
      this.connection.append(this.connectionText);
      this.queue = h("div", {class: "kw-queue", role: "status", "aria-live": "polite"});
      this.log = h("div", {class: "kw-log", role: "log", "aria-live": "polite", "data-i18n-aria-label": "widget.messages", tabindex: "0"},
        h("div", {class: "kw-note", "data-i18n": "widget.welcome"}));
      this.typing = h("div", {class: "kw-typing", "aria-live": "polite"});
      this.input = h("textarea", {id: "kw-input", rows: "1", "data-i18n-placeholder": "widget.input", "data-i18n-aria-label": "widget.input"});
      this.file = h("input", {type: "file", class: "kw-visually-hidden", tabindex: "-1", "aria-hidden": "true"});
      const attach = h("button", {class: "kw-attach", type: "button", "data-i18n-aria-label": "widget.attach", "data-i18n-title": "widget.attach",
        onclick: () => this.file.click()});
      attach.innerHTML = PAPERCLIP;
      const send = h("button", {class: "kw-send", type: "submit", "data-i18n": "widget.send"});
      const form = h("form", {class: "kw-form"}, attach, this.file, this.input, send);
      this.panel = h("section", {class: "kw-panel", id: "kw-panel", role: "dialog", "aria-labelledby": "kw-title", hidden: true},
        h("div", {class: "kw-header"},
          h("h2", {id: "kw-title", "data-i18n": "widget.title"}),
          h("label", {class: "kw-visually-hidden", for: "kw-language", "data-i18n": "widget.language"}),
          this.language,
          h("button", {class: "kw-close", type: "button", "data-i18n-aria-label": "widget.close", "data-i18n-title": "widget.close",
            onclick: () => this.toggle(false)}, "×")),
        this.connection, this.queue, this.log, this.typing, form);
      root.append(this.launcher, this.panel);

      window.Kefu.bindSwitcher(this.language);
      window.addEventListener("kefu:language", () => this.translate());
      this.translate();

      form.addEventListener("submit", (event) => { event.preventDefault(); this.submit(); });
      this.input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); this.submit(); }
      });
      this.input.addEventListener("input", () => this.onInput());
      this.file.addEventListener("change", () => { const file = this.file.files[0]; this.file.value = ""; if (file) this.upload(file); });
      this.panel.addEventListener("keydown", (event) => { if (event.key === "Escape") this.toggle(false); });
      document.addEventListener("visibilitychange", () => this.markRead());

      this.connect();
    }

    translate() {
      window.Kefu.apply(this.root);
      this.language.value = window.Kefu.language();
      for (const {element, key, values} of this.labels) element.textContent = this.t(key, values);
      this.showState(this.state);
    }

    toggle(open) {
      open = open === undefined ? this.panel.hidden : open;
      this.panel.hidden = !open;
      this.launcher.setAttribute("aria-expanded", String(open));
      if (open) {
        this.input.focus();
        this.scroll();
        this.markRead();
      } else {
        this.launcher.focus();
      }
    }

    // -- connection -------------------------------------------------------------------------

    async token() {
      let token = localStorage.getItem(this.prefix + "token");
      if (token) return token;
      const response = await fetch(origin + "/api/v1/webchat/visitors", {
        method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({account: config.account}),
      });
      if (!response.ok) throw new Error("kefu widget: no visitor token (" + response.status + ")");
      token = (await response.json()).token;
      localStorage.setItem(this.prefix + "token", token);
      return token;
    }

    async connect() {
      let token;
      try {
        token = await this.token();
      } catch (error) {
        console.warn(String(error));
        this.showState("offline");
        setTimeout(() => this.connect(), 5000);
        return;
      }
      this.visitorToken = token;
      const scheme = origin.startsWith("https:") ? "wss:" : "ws:";
      this.connection_ = new window.Kefu.KefuConnection({
        url: scheme + "//" + new URL(origin).host + "/ws/customer",
        token,
        storageKey: this.prefix + "unacked",
        onFrame: (frame) => this.onFrame(frame),
        onState: (state) => this.onState(state),
      });
      this.connection_.start();
    }

    onState(state) {
      this.showState(state);
      if (state === "signed-out") {
        // the visitor token is no longer valid: start again as a new visitor
        this.connection_.stop();
        localStorage.removeItem(this.prefix + "token");
        localStorage.removeItem(this.prefix + "unacked");
        setTimeout(() => this.connect(), 1000);
      }
    }

    showState(state) {
      this.state = state;
      this.connection.dataset.state = state;
      this.connectionText.textContent = this.t("widget.state." + state);
    }

    // -- frames from the server ---------------------------------------------------------------

    onFrame(frame) {
      switch (frame.type) {
        case "conversations":
          for (const conversation of frame.conversations) {
            this.connection_.follow(conversation.conversation_id);
          }
          if (frame.conversations.length) {
            const latest = frame.conversations[frame.conversations.length - 1].conversation_id;
            if (!this.conversationId || !frame.conversations.some((c) => c.conversation_id === this.conversationId)) this.setConversation(latest);
          } else if (this.conversationId && !this.starting) {
            this.setConversation(null);
          }
          break;
        case "ack":
          if (frame.client_id === this.starting) {
            this.starting = null;
            this.setConversation(frame.conversation_id);
            for (const message of this.waiting.splice(0)) this.sendMessage(message);
          }
          break;
        case "event":
          this.onEvent(frame);
          break;
        case "queue.position":
          if (frame.conversation_id !== this.conversationId) break;
          if (frame.estimated_wait_seconds !== undefined && frame.estimated_wait_seconds !== null) {
            this.labels = this.labels.filter((l) => l.element !== this.queue);
            this.label(this.queue, "widget.queue.wait", {position: frame.position, minutes: Math.max(1, Math.round(frame.estimated_wait_seconds / 60))});
          } else {
            this.labels = this.labels.filter((l) => l.element !== this.queue);
            this.label(this.queue, "widget.queue", {position: frame.position});
          }
          break;
        case "typing":
          if (frame.role === "agent") this.showTyping(frame.active);
          break;
        case "read":
          if (frame.role === "agent") {
            this.agentRead[frame.conversation_id] = Math.max(this.agentRead[frame.conversation_id] || 0, frame.seq);
            this.updateReceipts();
          }
          break;
        case "error":
          if (frame.ref && !frame.retryable) {
            if (frame.ref === this.starting) this.starting = null;
            const element = this.local.get(frame.ref);
            if (element) this.setStatus(element, "widget.error", {code: frame.code});
            else this.note("widget.error", {code: frame.code});
          }
          break;
      }
    }

    setConversation(id) {
      this.conversationId = id;
      if (id) localStorage.setItem(this.prefix + "conversation", id);
      else localStorage.removeItem(this.prefix + "conversation");
    }

    onEvent(event) {
      const sender = event.sender || {};
      switch (event.kind) {
        case "message":
          if (sender.role === "customer") this.ownMessage(event);
          else this.agentMessage(event);
          break;
        case "assigned":
          this.clearQueue();
          this.agentName = sender.display_name || null;
          this.note("widget.joined", {name: sender.display_name || this.t("widget.agent")});
          break;
        case "system":
          this.note(null, null, event.text);
          break;
        case "transferred":
          this.note("widget.transferred");
          break;
        case "closed":
          this.clearQueue();
          this.showTyping(false);
          this.note("widget.closed");
          if (event.conversation_id === this.conversationId) this.setConversation(null);
          break;
        default:
          break; // queued, and kinds this widget does not know
      }
    }

    clearQueue() {
      this.labels = this.labels.filter((l) => l.element !== this.queue);
      this.queue.textContent = "";
    }

    note(key, values, text) {
      const element = h("div", {class: "kw-note"});
      if (key) this.label(element, key, values);
      else element.textContent = text;
      this.append(element);
    }

    ownMessage(event) {
      let element = event.client_id && this.local.get(event.client_id);
      if (!element) {
        element = this.bubble("kw-own", null, event);
        this.append(element);
      }
      element.dataset.seq = event.seq;
      element.dataset.conversation = event.conversation_id;
      this.ownBySeq.push({seq: event.seq, conversation: event.conversation_id, element});
      this.setStatus(element, "widget.sent");
      this.updateReceipts();
    }

    agentMessage(event) {
      const name = (event.sender && event.sender.display_name) || this.t("widget.agent");
      this.append(this.bubble("kw-agent", name, event));
      this.showTyping(false);
      this.lastAgentSeq[event.conversation_id] = event.seq;
      this.markRead();
    }

    bubble(side, name, message) {
      const element = h("div", {class: "kw-msg " + side});
      if (name) element.append(h("span", {class: "kw-name"}, name));
      const body = h("div", {class: "kw-body"});
      element.append(body);
      if (message.attachment_id) {
        if ((message.message_kind || message.kind) === "image") {
          const image = h("img", {alt: message.text || this.t("widget.image")});
          body.append(image);
          this.fetchAttachment(message.attachment_id).then((url) => { if (url) { image.src = url; image.addEventListener("load", () => this.scroll(), {once: true}); } });
        } else {
          const link = h("a", {href: "#"});
          this.label(link, "widget.file");
          link.addEventListener("click", async (clickEvent) => {
            clickEvent.preventDefault();
            const url = await this.fetchAttachment(message.attachment_id);
            if (url) window.open(url, "_blank", "noopener");
          });
          const icon = h("span", {"aria-hidden": "true"});
          icon.innerHTML = PAPERCLIP;
          body.append(icon, " ", link);
        }
        if (message.text) body.append(h("div", {}, message.text));
      } else {
        body.textContent = message.text || "";
      }
      if (side === "kw-own") element.append(h("span", {class: "kw-status"}));
      return element;
    }

    setStatus(element, key, values) {
      const status = element.querySelector(".kw-status");
      if (!status) return;
      this.labels = this.labels.filter((l) => l.element !== status);
      this.label(status, key, values);
    }

    updateReceipts() {
      for (const own of this.ownBySeq) {
        if (!own.read && own.seq <= (this.agentRead[own.conversation] || 0)) {
          own.read = true;
          this.setStatus(own.element, "widget.read");
        }
      }
    }

    showTyping(active) {
      clearTimeout(this.typingTimer);
      this.labels = this.labels.filter((l) => l.element !== this.typing);
      this.typing.textContent = "";
      if (active) {
        this.label(this.typing, "widget.typing", {name: this.agentName || this.t("widget.agent")});
        this.typingTimer = setTimeout(() => this.showTyping(false), 10000);
      }
    }

    append(element) {
      const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
      this.log.append(element);
      if (atBottom || element.classList.contains("kw-own")) this.scroll();
    }

    scroll() { this.log.scrollTop = this.log.scrollHeight; }

    markRead() {
      if (this.panel.hidden || document.visibilityState === "hidden") return;
      for (const [conversation, seq] of Object.entries(this.lastAgentSeq)) {
        if ((this.sentRead[conversation] || 0) < seq) {
          if (this.connection_.sendRaw({type: "read", conversation_id: conversation, seq})) this.sentRead[conversation] = seq;
        }
      }
    }

    // -- sending ------------------------------------------------------------------------------

    onInput() {
      if (!this.conversationId) return;
      const active = this.input.value.trim() !== "";
      const now = Date.now();
      if (active && now - this.typingSentAt < 3000) return;
      this.typingSentAt = active ? now : 0;
      this.connection_.sendRaw({type: "typing", conversation_id: this.conversationId, active});
    }

    submit() {
      const text = this.input.value.trim();
      if (!text) return;
      this.input.value = "";
      if (this.conversationId) this.connection_.sendRaw({type: "typing", conversation_id: this.conversationId, active: false});
      this.typingSentAt = 0;
      this.queueMessage({kind: "text", text});
    }

    // Show an own message at once, then send it (starting a conversation first if there is none).
    queueMessage(message) {
      message.client_id = window.Kefu.newClientId();
      const element = this.bubble("kw-own", null, message);
      this.local.set(message.client_id, element);
      this.setStatus(element, "widget.sending");
      this.append(element);
      if (this.conversationId) {
        this.sendMessage(message);
      } else {
        this.waiting.push(message);
        if (!this.starting) {
          const start = {type: "conversation.start"};
          if (config.department) start.department = config.department;
          if (config.topic) start.topic = config.topic;
          this.starting = this.connection_.send(start);
        }
      }
    }

    sendMessage(message) {
      const frame = {type: "message.send", client_id: message.client_id, conversation_id: this.conversationId, kind: message.kind};
      if (message.text) frame.text = message.text;
      if (message.attachment_id) frame.attachment_id = message.attachment_id;
      this.connection_.send(frame);
    }

    async upload(file) {
      const name = file.name || "file";
      const notice = h("div", {class: "kw-note"});
      this.label(notice, "widget.uploading", {name});
      this.append(notice);
      try {
        const response = await fetch(origin + "/api/v1/attachments?filename=" + encodeURIComponent(name), {
          method: "POST",
          headers: {"Content-Type": file.type || "application/octet-stream", "Authorization": "Bearer " + this.visitorToken},
          body: file,
        });
        if (!response.ok) throw new Error(String(response.status));
        const attachment = await response.json();
        notice.remove();
        const kind = attachment.kind || kindOf(file.type);
        const message = {kind, attachment_id: attachment.id};
        if (kind === "file") message.text = name;
        this.queueMessage(message);
      } catch (error) {
        this.labels = this.labels.filter((l) => l.element !== notice);
        this.label(notice, "widget.upload.failed", {name});
      }
    }

    async fetchAttachment(id) {
      try {
        const response = await fetch(origin + "/api/v1/attachments/" + encodeURIComponent(id), {headers: {"Authorization": "Bearer " + this.visitorToken}});
        if (!response.ok) return null;
        return URL.createObjectURL(await response.blob());
      } catch (error) {
        return null;
      }
    }
  }

  function kindOf(contentType) {
    if (/^image\//.test(contentType)) return "image";
    if (/^audio\//.test(contentType)) return "voice";
    if (/^video\//.test(contentType)) return "video";
    return "file";
  }

  boot().catch((error) => console.warn(String(error)));
})();
