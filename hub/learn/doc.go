// Package learn is how the gates learn their pupils from what they saw:
// the hub-side decisions that turn a gate capture into attendance and, where
// the pupil's consent allows it, into a gate template (hub/facetemplates)
// that reaches the gates with the next gallery version.
//
// Confirm is a teacher's "this is <pupil>" on an unrecognised face
// (hub/facereview): the face is assigned, the pupil is marked present for
// that day as an attendance override whose reason names the face, and the
// capture becomes a teacher template (source "teacher", event the capture
// ID) when the consent in force allows gate templates. NotMine is "not my
// pupil": the face is hidden from that class. Each step is audited and
// idempotent, so a repeated or interrupted confirmation completes without
// doing anything twice.
//
// Automatic updates (a decision well inside the operating point adding its
// best crop as an automatic template) live in the same package.
//
// Authorisation (who may confirm which pupil, from which gates) is the
// caller's: hub/web checks it before calling.
package learn
