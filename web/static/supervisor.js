// The supervisor dashboard: the `stats` frame the server sends every second on /ws/agent,
// shown as tables and ECharts charts; the last minutes are kept in memory for the line chart.
(function (global) {
  "use strict";
  const {el} = Kefu.staff;
  const HISTORY_SECONDS = 600;

  Kefu.register({
    "en": {
      "sup.title": "Supervisor dashboard", "sup.updated": "Updated", "sup.queues": "Queues", "sup.queue": "Queue",
      "sup.waiting": "Waiting", "sup.longest": "Longest wait", "sup.service_level": "Service level",
      "sup.asa": "Average speed of answer", "sup.offered": "Offered", "sup.answered": "Answered",
      "sup.abandoned": "Abandoned", "sup.available": "Agents available", "sup.agents": "Agents", "sup.agent": "Agent",
      "sup.status": "Status", "sup.load": "Load", "sup.capacity": "Capacity", "sup.utilisation": "Load vs capacity",
      "sup.chart.waiting": "Waiting per queue", "sup.chart.history": "Waiting and answered, last minutes",
      "sup.chart.status": "Agents by status", "sup.no_queues": "No queue yet.", "sup.no_agents": "No agent signed in.",
      "status.online": "Online", "status.break": "Break", "status.offline": "Offline", "status.wrap_up": "Wrap-up",
      "conn.online": "Live", "conn.connecting": "Connecting…", "conn.reconnecting": "Reconnecting…",
      "conn.offline": "Disconnected", "conn.signed-out": "Signed out", "seconds": "{n} s",
    },
    "zh-CN": {
      "sup.title": "主管看板", "sup.updated": "更新时间", "sup.queues": "队列", "sup.queue": "队列",
      "sup.waiting": "排队中", "sup.longest": "最长等待", "sup.service_level": "服务水平",
      "sup.asa": "平均应答速度", "sup.offered": "呼入", "sup.answered": "已接待",
      "sup.abandoned": "放弃", "sup.available": "空闲坐席", "sup.agents": "坐席", "sup.agent": "坐席",
      "sup.status": "状态", "sup.load": "负载", "sup.capacity": "容量", "sup.utilisation": "负载/容量",
      "sup.chart.waiting": "各队列排队数", "sup.chart.history": "最近几分钟的排队与接待",
      "sup.chart.status": "坐席状态分布", "sup.no_queues": "暂无队列。", "sup.no_agents": "暂无已登录坐席。",
      "status.online": "在线", "status.break": "小休", "status.offline": "离线", "status.wrap_up": "话后处理",
      "conn.online": "实时", "conn.connecting": "连接中…", "conn.reconnecting": "重新连接中…",
      "conn.offline": "已断开", "conn.signed-out": "已退出", "seconds": "{n} 秒",
    },
  });

  let latest = null;
  let connectionState = "connecting";
  const history = []; // {at: Date, waiting, answered}
  const charts = {};

  function seconds(value) {
    return value === undefined || value === null ? "—" : Kefu.t("seconds", {n: Math.round(value * 10) / 10});
  }

  function percent(value) {
    return value === undefined || value === null ? "—" : Math.round(value * 1000) / 10 + "%";
  }

  function cell(text, className) { return el("td", {class: className, text: String(text)}); }

  function renderConnection() {
    const indicator = document.getElementById("connection");
    indicator.dataset.state = connectionState;
    indicator.textContent = Kefu.t("conn." + connectionState);
  }

  function renderTables() {
    if (!latest) return;
    document.getElementById("updated-at").textContent = new Date(latest.at).toLocaleTimeString(Kefu.language());
    const queueBody = document.querySelector("#queues tbody");
    queueBody.replaceChildren(...(latest.queues.length ? latest.queues.map((q) => el("tr", {"data-queue-id": q.queue_id},
      el("th", {scope: "row", text: q.name}),
      cell(q.waiting, "num waiting"), cell(seconds(q.longest_wait_seconds), "num longest"),
      cell(percent(q.service_level), "num service-level"), cell(seconds(q.average_speed_of_answer_seconds), "num asa"),
      cell(q.offered, "num offered"), cell(q.answered, "num answered"), cell(q.abandoned, "num abandoned"),
      cell(q.agents_available, "num available"))) : [el("tr", {}, el("td", {colspan: 9, class: "muted", text: Kefu.t("sup.no_queues")}))]));
    const agentBody = document.querySelector("#agents tbody");
    agentBody.replaceChildren(...(latest.agents.length ? latest.agents.map((a) => el("tr", {"data-agent-id": a.agent_id},
      el("th", {scope: "row", text: a.display_name}),
      el("td", {class: "status status-" + a.status, "data-status": a.status, text: Kefu.t("status." + a.status)}),
      cell(a.load, "num load"), cell(a.capacity, "num capacity"),
      el("td", {}, el("meter", {min: 0, max: Math.max(a.capacity, 1), value: a.load, high: Math.max(a.capacity, 1) * 0.8,
        "aria-label": Kefu.t("sup.utilisation") + " " + a.display_name + ": " + a.load + "/" + a.capacity})))) :
      [el("tr", {}, el("td", {colspan: 5, class: "muted", text: Kefu.t("sup.no_agents")}))]));
  }

  function renderCharts() {
    if (!latest || !global.echarts) return;
    for (const id of ["chart-waiting", "chart-history", "chart-status"]) {
      if (!charts[id]) charts[id] = global.echarts.init(document.getElementById(id));
    }
    charts["chart-waiting"].setOption({
      grid: {left: 40, right: 10, top: 20, bottom: 40}, tooltip: {},
      xAxis: {type: "category", data: latest.queues.map((q) => q.name)},
      yAxis: {type: "value", minInterval: 1},
      series: [{type: "bar", name: Kefu.t("sup.waiting"), data: latest.queues.map((q) => q.waiting), itemStyle: {color: "#1f6feb"}}],
    });
    charts["chart-history"].setOption({
      grid: {left: 40, right: 10, top: 30, bottom: 30}, tooltip: {trigger: "axis"},
      legend: {data: [Kefu.t("sup.waiting"), Kefu.t("sup.answered")]},
      xAxis: {type: "time"}, yAxis: {type: "value", minInterval: 1},
      series: [
        {type: "line", name: Kefu.t("sup.waiting"), showSymbol: false, data: history.map((h) => [h.at, h.waiting])},
        {type: "line", name: Kefu.t("sup.answered"), showSymbol: false, data: history.map((h) => [h.at, h.answered])},
      ],
    }, {replaceMerge: ["series"]});
    const byStatus = {};
    for (const agent of latest.agents) byStatus[agent.status] = (byStatus[agent.status] || 0) + 1;
    const colours = {online: "#12b76a", break: "#f79009", wrap_up: "#7a5af8", offline: "#98a2b3"};
    charts["chart-status"].setOption({
      tooltip: {trigger: "item"}, legend: {bottom: 0},
      series: [{type: "pie", radius: ["35%", "65%"], name: Kefu.t("sup.chart.status"),
        data: Object.entries(byStatus).map(([status, count]) => ({name: Kefu.t("status." + status), value: count, itemStyle: {color: colours[status]}}))}],
    }, {replaceMerge: ["series"]});
  }

  function onStats(frame) {
    latest = frame;
    const at = new Date(frame.at);
    history.push({
      at, waiting: frame.queues.reduce((sum, q) => sum + q.waiting, 0), answered: frame.queues.reduce((sum, q) => sum + q.answered, 0),
    });
    while (history.length && at - history[0].at > HISTORY_SECONDS * 1000) history.shift();
    renderTables();
    renderCharts();
  }

  function ready() {
    const connection = new Kefu.KefuConnection({
      url: Kefu.wsUrl("/ws/agent"), token: Kefu.staff.token(),
      onFrame: (frame) => { if (frame.type === "stats") onStats(frame); },
      onState: (state) => { connectionState = state; renderConnection(); },
    });
    renderConnection();
    connection.start();
    global.addEventListener("resize", () => { for (const chart of Object.values(charts)) chart.resize(); });
  }

  global.addEventListener("kefu:language", () => { renderConnection(); renderTables(); renderCharts(); });
  Kefu.staff.start(["conversations.monitor"], ready);
})(window);
