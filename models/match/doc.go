// Package match is what the face engine's output means, in pure Go:
// descriptors and the model that made them, galleries and 1:N matching,
// school sessions, the calibrated threshold, per-frame decisions and
// M-of-K votes, crop quality and the quality gates photos must pass.
// Gates, the hub and the tools use it without linking the engine
// (models/faceengine), which produces the descriptors.
package match
