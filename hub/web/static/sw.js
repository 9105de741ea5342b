// DiemDanh service worker: shows Web Push messages from the hub.
self.addEventListener("push", function (e) {
  var d = {};
  try { d = e.data ? e.data.json() : {}; } catch (err) { d = { title: "DiemDanh", body: e.data ? e.data.text() : "" }; }
  e.waitUntil(self.registration.showNotification(d.title || "DiemDanh", { body: d.body || "", tag: d.tag, data: { url: d.url || "/parent" } }));
});
self.addEventListener("notificationclick", function (e) {
  e.notification.close();
  e.waitUntil(clients.openWindow((e.notification.data && e.notification.data.url) || "/parent"));
});
