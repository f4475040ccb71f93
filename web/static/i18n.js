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
