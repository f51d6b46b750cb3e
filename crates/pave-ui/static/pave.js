// pave's own script: the graph view (dagre layout drawn as SVG, states
// refreshed every 2 s), the live log tail, auto-submitting selects and
// confirmations. Everything else is htmx attributes in the HTML.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVG, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  // ------------------------------------------------------------ graph

  function stateClass(s) { return "st-" + (s || "none"); }

  function drawGraph(box, data) {
    const g = new dagre.graphlib.Graph({ compound: true, multigraph: false });
    g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 56, marginx: 16, marginy: 16 });
    g.setDefaultEdgeLabel(function () { return {}; });
    for (const grp of data.groups) {
      g.setNode("group:" + grp.id, { label: grp.label, cluster: true, paddingTop: 24 });
    }
    for (const grp of data.groups) {
      if (grp.parent) g.setParent("group:" + grp.id, "group:" + grp.parent);
    }
    for (const n of data.nodes) {
      const text = n.label + (n.mapped ? " [" + (n.count || "") + "]" : "");
      const sub = n.kind + " · " + (n.state || "").replace(/_/g, " ");
      const w = Math.max(130, Math.min(300, 30 + Math.max(text.length * 7.6, sub.length * 6.4)));
      g.setNode("task:" + n.id, { width: w, height: 44, data: n, text: text });
      if (n.group && g.hasNode("group:" + n.group)) g.setParent("task:" + n.id, "group:" + n.group);
    }
    for (const [from, to] of data.edges) {
      if (g.hasNode("task:" + from) && g.hasNode("task:" + to)) g.setEdge("task:" + from, "task:" + to);
    }
    dagre.layout(g);
    const gw = g.graph().width || 200, gh = g.graph().height || 100;
    const svg = el("svg", { width: gw, height: gh, viewBox: "0 0 " + gw + " " + gh, role: "group" });
    const defs = el("defs", {}, svg);
    const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs);
    el("path", { d: "M 0 0 L 10 5 L 0 10 z" }, marker);
    // Clusters first (behind), outermost first.
    const clusters = g.nodes().filter(function (id) { return id.startsWith("group:"); });
    clusters.sort(function (a, b) { return depth(g, a) - depth(g, b); });
    for (const id of clusters) {
      const c = g.node(id);
      const grp = el("g", { class: "cluster" }, svg);
      el("rect", { x: c.x - c.width / 2, y: c.y - c.height / 2, width: c.width, height: c.height, rx: 10 }, grp);
      const t = el("text", { x: c.x - c.width / 2 + 10, y: c.y - c.height / 2 + 16 }, grp);
      t.textContent = c.label;
    }
    for (const e of g.edges()) {
      const pts = g.edge(e).points;
      const d = pts.map(function (p, i) { return (i ? "L" : "M") + p.x.toFixed(1) + " " + p.y.toFixed(1); }).join(" ");
      el("path", { d: d, class: "edge", "marker-end": "url(#arrow)" }, svg);
    }
    const nodes = {};
    for (const id of g.nodes()) {
      if (!id.startsWith("task:")) continue;
      const n = g.node(id), info = n.data;
      const x = n.x - n.width / 2, y = n.y - n.height / 2;
      const link = el("a", { class: "node", href: info.href || "#", "data-id": info.id }, svg);
      if (!info.href) link.setAttribute("tabindex", "-1");
      const title = el("title", {}, link);
      title.textContent = info.id + " · " + (info.state || "no state");
      const boxRect = el("rect", { class: "box", x: x, y: y, width: n.width, height: n.height, rx: 8 }, link);
      const bar = el("rect", { class: "state " + stateClass(info.state), x: x, y: y, width: 6, height: n.height, rx: 3 }, link);
      const label = el("text", { x: x + 16, y: y + 19 }, link);
      label.textContent = n.text;
      const sub = el("text", { class: "sub", x: x + 16, y: y + 34 }, link);
      sub.textContent = info.kind + (info.state ? " · " + info.state.replace(/_/g, " ") : "");
      nodes[info.id] = { bar: bar, box: boxRect, sub: sub, title: title, kind: info.kind };
    }
    // dagre needs fill set on the rect: CSS classes set background, not fill.
    box.replaceChildren(svg);
    paintStates(box, nodes, data);
    return nodes;
  }

  function depth(g, id) { let d = 0; for (let p = g.parent(id); p; p = g.parent(p)) d++; return d; }

  const probe = document.createElement("span");
  function colorOf(state) {
    probe.className = stateClass(state);
    document.body.appendChild(probe);
    const c = getComputedStyle(probe).backgroundColor;
    probe.remove();
    return c;
  }

  function paintStates(box, nodes, data) {
    for (const n of data.nodes) {
      const v = nodes[n.id];
      if (!v) continue;
      const c = n.state ? colorOf(n.state) : "transparent";
      const fill = c === "rgba(0, 0, 0, 0)" ? "transparent" : c;
      v.bar.setAttribute("fill", fill);
      if (n.state) v.box.style.stroke = fill; else v.box.style.removeProperty("stroke");
      v.sub.textContent = v.kind + (n.state ? " · " + n.state.replace(/_/g, " ") : "");
      v.title.textContent = n.id + " · " + (n.state || "no state");
    }
  }

  function initGraph(box) {
    const src = box.dataset.src;
    let nodes = null, shape = "";
    async function tick() {
      try {
        const r = await fetch(src, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (r.redirected || r.status === 401) { location.reload(); return; }
        if (!r.ok) throw new Error("HTTP " + r.status);
        const data = await r.json();
        const s = JSON.stringify([data.nodes.map(function (n) { return [n.id, n.count]; }), data.edges, data.groups]);
        if (s !== shape || !nodes) { nodes = drawGraph(box, data); shape = s; }
        else paintStates(box, nodes, data);
        const active = data.run_state === "queued" || data.run_state === "running";
        setTimeout(tick, active ? 2000 : 10000);
      } catch (e) {
        box.querySelector("p") && (box.querySelector("p").textContent = "Cannot load the graph: " + e.message);
        setTimeout(tick, 5000);
      }
    }
    tick();
  }

  // ------------------------------------------------------------ logs

  function initLog(pre) {
    const src = pre.dataset.log;
    const status = document.getElementById("log-status");
    let offset = 0;
    async function tick() {
      try {
        const r = await fetch(src + "?offset=" + offset, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        // Sent to the login page: the session ended; the page itself will redirect.
        if (r.redirected) { location.reload(); return; }
        if (!r.ok) throw new Error("HTTP " + r.status);
        const chunk = await r.json();
        if (chunk.content) {
          const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
          pre.appendChild(document.createTextNode(chunk.content));
          if (atBottom) pre.scrollTop = pre.scrollHeight;
        }
        offset = chunk.next_offset;
        if (chunk.end_of_log) {
          if (status) status.textContent = offset ? "End of log · " + offset + " bytes" : "This try wrote no log.";
          pre.dataset.done = "true";
          return;
        }
        if (status) status.textContent = "Live: following the log…";
        setTimeout(tick, chunk.content ? 300 : 1000);
      } catch (e) {
        if (status) status.textContent = "Cannot load the log: " + e.message + " (retrying)";
        setTimeout(tick, 3000);
      }
    }
    tick();
  }

  // ------------------------------------------------------------ small things

  document.addEventListener("change", function (ev) {
    const t = ev.target;
    if (t instanceof HTMLSelectElement && t.hasAttribute("data-autosubmit") && t.form) t.form.submit();
  });
  document.addEventListener("submit", function (ev) {
    const f = ev.target;
    if (f instanceof HTMLFormElement && f.dataset.confirm && !window.confirm(f.dataset.confirm)) ev.preventDefault();
  }, true);

  function init() {
    const graph = document.getElementById("graph");
    if (graph && window.dagre) initGraph(graph);
    for (const pre of document.querySelectorAll("pre[data-log]")) initLog(pre);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
