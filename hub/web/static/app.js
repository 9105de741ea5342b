// DiemDanh pages: live class board (Server-Sent Events), filter, enrolment
// upload/camera, Web Push subscription, print button. No inline script.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // ---- class board -------------------------------------------------
  var board = document.getElementById("board");
  function recount() {
    var counts = { total: 0 };
    board.querySelectorAll("tbody tr[data-status]").forEach(function (tr) {
      counts.total++;
      counts[tr.dataset.status] = (counts[tr.dataset.status] || 0) + 1;
    });
    document.querySelectorAll("[data-count]").forEach(function (el) {
      el.textContent = counts[el.dataset.count] || 0;
    });
  }
  function applyRow(labels, r) {
    var tr = document.getElementById("p-" + r.pupil_id);
    if (!tr) return;
    tr.dataset.status = r.status;
    tr.className = "st-" + r.status + " flash-row";
    tr.querySelector(".status .badge").textContent = labels[r.status] || r.status;
    tr.querySelector(".status .reason").textContent = r.reason || "";
    tr.querySelector(".arrived").textContent = r.arrived || "";
    tr.querySelector(".departed").textContent = r.departed || "";
    tr.querySelector(".gate").textContent = r.gate || "";
    var face = tr.querySelector(".face");
    face.textContent = "";
    if (r.has_crop && r.event_id) {
      var img = document.createElement("img");
      img.src = "/teacher/crop/" + encodeURIComponent(r.event_id);
      img.alt = tr.dataset.name || "";
      img.width = 48; img.height = 48;
      face.appendChild(img);
    }
    var rej = tr.querySelector("form.reject");
    if (rej) {
      rej.querySelector('input[name="event_id"]').value = r.event_id || "";
      rej.hidden = !r.event_id;
    }
    recount();
  }
  if (board) {
    var labels = JSON.parse(board.dataset.labels || "{}");
    var missing = document.getElementById("missing");
    if (missing) {
      missing.addEventListener("change", function () {
        board.classList.toggle("only-missing", missing.checked);
        var u = new URL(location.href);
        if (missing.checked) u.searchParams.set("missing", "1"); else u.searchParams.delete("missing");
        history.replaceState(null, "", u.toString());
      });
    }
    var live = document.getElementById("live");
    if (live && live.dataset.live && window.EventSource) {
      var failed = false;
      var es = new EventSource(live.dataset.live);
      es.addEventListener("open", function () {
        if (failed) { location.reload(); return; } // resync after an outage
        live.textContent = live.dataset.okText;
        live.classList.remove("off");
        document.body.dataset.live = "open";
      });
      es.addEventListener("row", function (e) {
        try { applyRow(labels, JSON.parse(e.data)); } catch (err) { /* ignore a bad frame */ }
      });
      es.addEventListener("error", function () {
        failed = true;
        live.textContent = live.dataset.lostText;
        live.classList.add("off");
      });
    }
  }

  // ---- print -------------------------------------------------------
  document.querySelectorAll("[data-print]").forEach(function (b) {
    b.addEventListener("click", function () { window.print(); });
  });

  // ---- enrolment ---------------------------------------------------
  var ef = document.getElementById("enrol-form");
  if (ef) {
    var shots = [];
    var video = document.getElementById("camera");
    var on = document.getElementById("camera-on");
    var shot = document.getElementById("camera-shot");
    var shotsEl = document.getElementById("shots");
    var out = document.getElementById("verdicts");
    on.addEventListener("click", function () {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { out.textContent = ef.dataset.cameraError; return; }
      navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720, facingMode: "user" } }).then(function (stream) {
        video.srcObject = stream; video.hidden = false; shot.hidden = false;
      }).catch(function () { out.textContent = ef.dataset.cameraError; });
    });
    shot.addEventListener("click", function () {
      if (shots.length >= 10) return;
      var c = document.createElement("canvas");
      c.width = video.videoWidth || 640; c.height = video.videoHeight || 480;
      c.getContext("2d").drawImage(video, 0, 0, c.width, c.height);
      c.toBlob(function (b) {
        shots.push(b);
        var img = document.createElement("img");
        img.src = URL.createObjectURL(b); img.alt = "camera " + shots.length;
        shotsEl.appendChild(img);
      }, "image/jpeg", 0.92);
    });
    ef.addEventListener("submit", function (e) {
      e.preventDefault();
      var fd = new FormData(ef);
      shots.forEach(function (b, i) { fd.append("photos", b, "camera-" + (i + 1) + ".jpg"); });
      out.textContent = ef.dataset.working;
      fetch(ef.action, { method: "POST", body: fd, headers: { "X-CSRF-Token": csrf, "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
        .then(function (res) {
          out.textContent = "";
          if (!res.ok) { var li = document.createElement("li"); li.className = "rejected"; li.textContent = res.j.error || "error"; out.appendChild(li); return; }
          res.j.results.forEach(function (v) {
            var li = document.createElement("li");
            li.className = v.status;
            if (v.crop) { var img = document.createElement("img"); img.src = v.crop; img.alt = v.file; li.appendChild(img); }
            var t = document.createElement("div");
            var b = document.createElement("strong"); b.textContent = v.file + ": " + v.label; t.appendChild(b);
            (v.reasons || []).forEach(function (r) { var p = document.createElement("div"); p.textContent = r; t.appendChild(p); });
            li.appendChild(t);
            out.appendChild(li);
          });
        }).catch(function (err) { out.textContent = String(err); });
    });
  }

  // ---- Web Push ----------------------------------------------------
  var pb = document.getElementById("push-subscribe");
  if (pb) {
    var st = document.getElementById("push-status");
    pb.addEventListener("click", function () {
      if (!("serviceWorker" in navigator) || !("PushManager" in window)) { st.textContent = pb.dataset.unsupported; return; }
      var key = pb.dataset.vapid.replace(/-/g, "+").replace(/_/g, "/");
      while (key.length % 4) key += "=";
      var raw = atob(key), arr = new Uint8Array(raw.length);
      for (var i = 0; i < raw.length; i++) arr[i] = raw.charCodeAt(i);
      navigator.serviceWorker.register("/sw.js").then(function (reg) {
        return reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: arr });
      }).then(function (sub) {
        return fetch("/parent/push", { method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Accept": "application/json" },
          body: JSON.stringify(sub) });
      }).then(function (r) { st.textContent = r.ok ? pb.dataset.ok : pb.dataset.unsupported; })
        .catch(function (err) { st.textContent = pb.dataset.unsupported + " (" + err + ")"; });
    });
  }
})();

// A section with data-poll (a running model trial or switch) reloads the
// page every data-poll milliseconds until it ends.
(function () {
  var el = document.querySelector("[data-poll]");
  if (!el) { return; }
  setTimeout(function () { location.reload(); }, Number(el.dataset.poll) || 2000);
})();
