// Package wire is the versioned contract between gates and the hub: every
// MQTT payload (attendance event, gate status, heartbeat, gallery
// announcement) and its topic, and the gallery document the gates
// download. Decoding is strict (unknown fields are errors) and every
// payload is validated; errors name the bad field. See PROTOCOL.md. It is
// pure Go.
package wire
