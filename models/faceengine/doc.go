// Package faceengine is the face engine that runs the models in models/:
// image decoding, face detection (dlib's HOG, YuNet), landmarks and
// alignment, and the embedders that turn a face into a descriptor (ONNX
// networks through OpenCV's DNN module, dlib's ResNet through go-face).
// It is the one package that links OpenCV (gocv) and dlib through cgo, and
// its C constructor (hog.cc) caps glibc's malloc arenas in every binary
// that imports it.
//
// What the engine produces is described in pure-Go packages that the rest
// of the code uses without linking the engine: match (descriptors,
// galleries, calibration, quality gates), wire (the gate↔hub MQTT contract
// and the gallery document), imagecheck (header and completeness checks of
// encoded images), errkind (typed errors) and conf (configuration, logging,
// paths).
//
// It lives under models/ because it is the one piece of Go that loads and
// verifies the weights kept there.
package faceengine
