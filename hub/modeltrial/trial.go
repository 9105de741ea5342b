package modeltrial

import (
	"context"
	"errors"
	"fmt"

	"github.com/diemdanh/diemdanh/hub/facetemplates"
)

// Start begins a trial of candidate on school's kept photos in the
// background (audited as ActionTrial by actor) and returns its first
// state. It fails with ErrBusy while another trial or a switch runs,
// ErrUnknown for a name that is not a candidate, or when the candidate is
// the current model.
func (r *Runner) Start(ctx context.Context, school, candidate, actor, ip string) (Trial, error) {
	c, err := r.lookup(candidate)
	if err != nil {
		return Trial{}, err
	}
	if c.Current {
		return Trial{}, fmt.Errorf("%w: %q is the current model", ErrUnknown, candidate)
	}
	refs, without, err := r.photos.KeptPhotos(ctx, school)
	if err != nil {
		return Trial{}, err
	}
	jobCtx, err := r.claim()
	if err != nil {
		return Trial{}, err
	}
	t := &Trial{School: school, Candidate: candidate, State: StateRunning, Total: len(refs), WithoutPhoto: without, Started: r.now()}
	if err := r.audit.Record(ctx, actor, ActionTrial, "school:"+school,
		map[string]any{"candidate": c.Model, "photos": len(refs)}, ip); err != nil {
		r.release()
		return Trial{}, err
	}
	r.update(func() { r.trials[school] = t })
	go func() {
		defer r.release()
		cur, cand, err := r.runTrial(jobCtx, t, c, refs)
		r.update(func() {
			t.Finished = r.now()
			switch {
			case err == nil:
				t.State, t.Current, t.Tried = StateDone, cur, cand
			case errors.Is(err, context.Canceled):
				t.State = StateCancelled
			default:
				t.State, t.Error = StateFailed, err.Error()
			}
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			r.log.Warn("model trial failed", "school", school, "candidate", candidate, "err", err)
		}
	}()
	return *t, nil
}

// runTrial opens both engines and runs every photo through each, one
// photo at a time (the bounded worker: one engine worker per model).
func (r *Runner) runTrial(ctx context.Context, t *Trial, cand Candidate, refs []facetemplates.KeptRef) (*Column, *Column, error) {
	var current Candidate
	for _, c := range r.models.Candidates() {
		if c.Current {
			current = c
		}
	}
	if current.Name == "" {
		return nil, nil, fmt.Errorf("modeltrial: no current model among the candidates")
	}
	curEmb, closeCur, err := r.models.Open(current.Name)
	if err != nil {
		return nil, nil, err
	}
	defer closeCur()
	candEmb, closeCand, err := r.models.Open(cand.Name)
	if err != nil {
		return nil, nil, err
	}
	defer closeCand()
	a := &accumulator{candidate: current.Name, model: curEmb.Model()}
	b := &accumulator{candidate: cand.Name, model: candEmb.Model()}
	for i, ref := range refs {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		jpg, err := r.photos.Photo(ctx, ref.TemplateID)
		if err != nil {
			return nil, nil, err
		}
		if err := a.add(ctx, curEmb, ref.PupilID, jpg); err != nil {
			return nil, nil, err
		}
		if err := b.add(ctx, candEmb, ref.PupilID, jpg); err != nil {
			return nil, nil, err
		}
		r.update(func() { t.Done = i + 1 })
	}
	ca, cb := a.column(r.cfg.TargetFAR), b.column(r.cfg.TargetFAR)
	return &ca, &cb, nil
}

// StartSwitch makes candidate the hub's model in the background:
// Models.Switch sets it, re-embeds every kept photo and bumps the
// galleries, so the gates fetch the new model's. It is audited as
// ActionSwitch by actor when it starts (from, to) and again with the
// re-embedding's report (the pupils flagged for re-enrolment among it)
// when it ends. It fails with ErrBusy while a trial or another switch
// runs, and ErrUnknown for a name that is not a candidate or is the
// current model.
func (r *Runner) StartSwitch(ctx context.Context, candidate, actor, ip string) (Switch, error) {
	c, err := r.lookup(candidate)
	if err != nil {
		return Switch{}, err
	}
	if c.Current {
		return Switch{}, fmt.Errorf("%w: %q is the current model", ErrUnknown, candidate)
	}
	from := ""
	for _, x := range r.models.Candidates() {
		if x.Current {
			from = x.Model
		}
	}
	jobCtx, err := r.claim()
	if err != nil {
		return Switch{}, err
	}
	if err := r.audit.Record(ctx, actor, ActionSwitch, "model", map[string]any{"from": from, "to": c.Model, "state": StateRunning}, ip); err != nil {
		r.release()
		return Switch{}, err
	}
	sw := &Switch{Candidate: candidate, State: StateRunning, Started: r.now()}
	r.update(func() { r.sw = sw })
	go func() {
		defer r.release()
		// The switch is one action: it completes even if the page goes
		// away; only the hub's shutdown stops it (the re-embedding then
		// resumes at the next start: enrol.reembed_on_upgrade).
		rep, err := r.models.Switch(jobCtx, candidate)
		detail := map[string]any{"from": from, "to": c.Model, "reembed": rep}
		r.update(func() {
			sw.Finished = r.now()
			if err != nil {
				sw.State, sw.Error = StateFailed, err.Error()
				detail["error"] = err.Error()
			} else {
				sw.State, sw.Report = StateDone, &rep
			}
			detail["state"] = sw.State
		})
		if err := r.audit.Record(context.WithoutCancel(jobCtx), actor, ActionSwitch, "model", detail, ip); err != nil {
			r.log.Error("model switch not audited", "err", err)
		}
	}()
	return *sw, nil
}
