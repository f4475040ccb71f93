// kefu's websocket protocol in the browser (docs/protocol.md), shared by every page.
//
// KefuConnection keeps one socket open: it reconnects with jittered exponential backoff,
// says `resume` with the last seq it saw for each conversation it follows, and keeps every
// storable frame it sent (message, note, close, ...) until the server acks it, so a frame
// sent while the network is down goes out, with the same client_id, once it is back.
// The unacknowledged frames are also kept in localStorage under `storageKey`, so they
// survive a reload of the page.
(function (global) {
  "use strict";

  const STORABLE = new Set(["conversation.start", "message.send", "note.add", "transfer", "conversation.close"]);

  function newClientId() {
    if (global.crypto && global.crypto.randomUUID) return global.crypto.randomUUID();
    return "c-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
  }

  class KefuConnection {
    // options: {url: ws URL without token, token, storageKey, onFrame(frame), onState(state)}
    constructor(options) {
      this.options = options;
      this.socket = null;
      this.state = "connecting";
      this.lastSeq = {};          // conversation id -> highest seq seen
      this.following = new Set(); // conversations to resume after a reconnect
      this.pending = this._load(); // client_id -> frame, sent and not yet acked
      this.attempt = 0;
      this.closedForGood = false;
      this.heartbeat = null;
    }

    start() { this._open(); }

    stop() {
      this.closedForGood = true;
      if (this.socket) this.socket.close(1000);
    }

    follow(conversationId, lastSeq) {
      this.following.add(conversationId);
      if (lastSeq !== undefined && lastSeq > (this.lastSeq[conversationId] || 0)) this.lastSeq[conversationId] = lastSeq;
      this.sendRaw({type: "resume", conversation_id: conversationId, last_seq: this.lastSeq[conversationId] || 0});
    }

    // Send a frame; storable frames get a client_id (unless they have one) and are kept until acked.
    send(frame) {
      if (STORABLE.has(frame.type)) {
        if (!frame.client_id) frame.client_id = newClientId();
        this.pending[frame.client_id] = frame;
        this._save();
      }
      this.sendRaw(frame);
      return frame.client_id;
    }

    sendRaw(frame) {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify(Object.assign({v: 1}, frame)));
        return true;
      }
      return false;
    }

    _open() {
      this._setState(this.attempt === 0 ? "connecting" : "reconnecting");
      const url = this.options.url + (this.options.url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this.options.token);
      const socket = new WebSocket(url);
      this.socket = socket;
      socket.onopen = () => {
        this.attempt = 0;
        this._setState("online");
        for (const conversationId of this.following) {
          this.sendRaw({type: "resume", conversation_id: conversationId, last_seq: this.lastSeq[conversationId] || 0});
        }
        for (const frame of Object.values(this.pending)) this.sendRaw(frame);
        clearInterval(this.heartbeat);
        this.heartbeat = setInterval(() => this.sendRaw({type: "ping"}), 20000);
      };
      socket.onmessage = (message) => {
        let frame;
        try { frame = JSON.parse(message.data); } catch (error) { return; }
        if (frame.type === "ack") {
          delete this.pending[frame.client_id];
          this._save();
        } else if (frame.type === "event") {
          const seen = this.lastSeq[frame.conversation_id] || 0;
          if (frame.seq <= seen) return; // already shown (a replay overlapping what arrived live)
          this.lastSeq[frame.conversation_id] = frame.seq;
          this.following.add(frame.conversation_id);
        } else if (frame.type === "error" && frame.ref && !frame.retryable) {
          delete this.pending[frame.ref];
          this._save();
        }
        this.options.onFrame(frame);
      };
      socket.onclose = (event) => {
        clearInterval(this.heartbeat);
        if (this.socket !== socket) return;
        this.socket = null;
        if (this.closedForGood || [1008, 4000, 4003].includes(event.code)) {
          this._setState(event.code === 1008 ? "signed-out" : "offline");
          return;
        }
        this.attempt += 1;
        const delay = Math.min(10000, 300 * 2 ** Math.min(this.attempt, 6)) * (0.5 + Math.random() / 2);
        this._setState("reconnecting");
        setTimeout(() => this._open(), delay);
      };
    }

    _setState(state) {
      this.state = state;
      if (this.options.onState) this.options.onState(state);
    }

    _load() {
      if (!this.options.storageKey) return {};
      try { return JSON.parse(global.localStorage.getItem(this.options.storageKey) || "{}"); } catch (error) { return {}; }
    }

    _save() {
      if (!this.options.storageKey) return;
      try { global.localStorage.setItem(this.options.storageKey, JSON.stringify(this.pending)); } catch (error) { /* full or blocked */ }
    }
  }

  function wsUrl(path) {
    const scheme = global.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + global.location.host + path;
  }

  global.Kefu = Object.assign(global.Kefu || {}, {KefuConnection, newClientId, wsUrl});
})(window);
