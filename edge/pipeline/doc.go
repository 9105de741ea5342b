// Package pipeline is the gate's recognition pipeline: detect faces on a
// downscaled frame (YuNet by default, dlib HOG as an option: Config.Detector),
// follow them with an IoU tracker, describe only each track's best crops on
// the full-resolution frame, decide an identity by M-of-K voting with a
// distance threshold and a margin over the second-best identity, debounce
// (one arrival per pupil per day per direction, persisted in the edge store)
// and hand events to the durable outbox. Stages are goroutines joined by
// bounded channels under an errgroup: capture → detect/track → recognise
// (worker pool) → publish.
package pipeline
