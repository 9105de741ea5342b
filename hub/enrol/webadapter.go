package enrol

import (
	"context"

	"github.com/diemdanh/diemdanh/hub/web"
)

// WebEnroller adapts Service to hub/web's Enroller (the admin enrolment
// page): the same EnrolPhotos path as the API and the bulk command.
type WebEnroller struct{ S *Service }

// EnrolPhotos implements web.Enroller. Reasons are "English / Tiếng Việt".
func (w WebEnroller) EnrolPhotos(ctx context.Context, pupilID string, files []string, photos [][]byte, actor, ip string) ([]web.PhotoVerdict, error) {
	ps := make([]Photo, len(photos))
	for i := range photos {
		ps[i] = Photo{Data: photos[i]}
		if i < len(files) {
			ps[i].Name = files[i]
		}
	}
	res, err := w.S.EnrolPhotos(ctx, actor, pupilID, ps)
	if err != nil {
		return nil, err
	}
	out := make([]web.PhotoVerdict, len(res.Photos))
	for i, v := range res.Photos {
		pv := web.PhotoVerdict{File: v.File, Status: v.Status, CropJPEG: v.CropJPEG}
		if v.Status == StatusAccepted {
			pv.Status = "enrolled"
		}
		for _, r := range v.Reasons {
			pv.Reasons = append(pv.Reasons, r.VI+" / "+r.EN)
		}
		out[i] = pv
	}
	return out, nil
}

// WebFeedback adapts Service to hub/web's Feedback ("not this pupil" on the
// teacher's board).
type WebFeedback struct{ S *Service }

// NotThisPupil implements web.Feedback.
func (w WebFeedback) NotThisPupil(ctx context.Context, eventID, reason, actor string) error {
	_, err := w.S.MarkNotThisPupil(ctx, actor, eventID, reason)
	return err
}
