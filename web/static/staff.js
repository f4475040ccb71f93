// Shared by the supervisor and admin pages: the sign-in form (token in sessionStorage), the
// language switcher, and a small REST helper whose errors carry the server's message.
(function (global) {
  "use strict";
  const document = global.document;
  const TOKEN_KEY = "kefu.staff.token";

  Kefu.register({
    "en": {
      "signin.title": "Sign in", "signin.account": "Account", "signin.email": "E-mail", "signin.password": "Password",
      "signin.submit": "Sign in", "signin.failed": "Sign-in failed: check the account, e-mail and password.",
      "signout": "Sign out", "language": "Language",
      "error.network": "The server could not be reached.",
    },
    "zh-CN": {
      "signin.title": "登录", "signin.account": "账户", "signin.email": "电子邮箱", "signin.password": "密码",
      "signin.submit": "登录", "signin.failed": "登录失败：请检查账户、电子邮箱和密码。",
      "signout": "退出登录", "language": "语言",
      "error.network": "无法连接服务器。",
    },
  });

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  function token() { return global.sessionStorage.getItem(TOKEN_KEY); }

  async function api(method, path, body) {
    const headers = {"Authorization": "Bearer " + token()};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (error) {
      throw new ApiError(0, "network", Kefu.t("error.network"));
    }
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = data.error || {};
      throw new ApiError(response.status, error.code || "error", error.message || response.statusText);
    }
    return data;
  }

  // The page opens for a user holding at least one of `permissions` (Kefu.holdsAny), whatever
  // their role is called; onReady(user) runs once signed in, `user` as GET /api/v1/me answers.
  async function start(permissions, onReady) {
    Kefu.apply();
    Kefu.bindSwitcher(document.getElementById("language"));
    const form = document.getElementById("signin");
    const error = document.getElementById("signin-error");
    const app = document.getElementById("app");
    const show = (signedIn) => { form.hidden = signedIn; app.hidden = !signedIn; };
    document.getElementById("signout").addEventListener("click", async () => {
      try { await api("POST", "/api/v1/auth/sign-out"); } catch (e) { /* gone already */ }
      global.sessionStorage.removeItem(TOKEN_KEY);
      global.location.reload();
    });
    async function enter() {
      try {
        const user = await api("GET", "/api/v1/me");
        if (!Kefu.holdsAny(user, permissions)) {
          error.textContent = Kefu.pageForbiddenText(permissions);
          global.sessionStorage.removeItem(TOKEN_KEY);
          show(false);
          return;
        }
        document.getElementById("who").textContent = user.display_name;
        show(true);
        onReady(user);
      } catch (e) {
        global.sessionStorage.removeItem(TOKEN_KEY);
        show(false);
      }
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      const body = {account: form.account.value.trim(), email: form.email.value.trim(), password: form.password.value};
      try {
        const response = await fetch("/api/v1/auth/sign-in", {
          method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
        });
        if (!response.ok) {
          const code = ((await response.json().catch(() => ({}))).error || {}).code;
          error.textContent = Kefu.refusalText(code, response.headers.get("Retry-After")) || Kefu.t("signin.failed");
          return;
        }
        global.sessionStorage.setItem(TOKEN_KEY, (await response.json()).token);
        form.password.value = "";
        await enter();
      } catch (e) {
        error.textContent = Kefu.t("error.network");
      }
    });
    if (token()) await enter(); else show(false);
  }

  function el(tag, attributes, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") element.textContent = value;
      else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
      else element.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) element.append(child);
    return element;
  }

  global.Kefu = Object.assign(global.Kefu || {}, {staff: {start, api, token, el, ApiError}});
})(window);
