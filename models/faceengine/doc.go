// Package gatekit is the code shared by the gate device (bin/edge) and the
// school hub (bin/hub): the face engine that runs the models in models/,
// descriptors and the gallery used to match them, the versioned MQTT wire
// contract between gates and hub, and the configuration and logging
// conventions both binaries follow.
//
// It lives under models/ because it is the one piece of Go that loads and
// verifies the weights kept there; edge/ and hub/ both import it and nothing
// else imports edge/ or hub/ code across that line.
package gatekit
