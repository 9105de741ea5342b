package eval

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WritePlot draws, side by side, the DET curve (FRR against FAR, both on
// log scales, with the EER and the calibrated operating point marked) and
// the genuine and impostor distance histograms (as densities, with the
// calibrated threshold as a vertical line), into a PNG file.
func WritePlot(path string, r *Report) error {
	det, err := detPlot(r)
	if err != nil {
		return err
	}
	hist, err := histPlot(r)
	if err != nil {
		return err
	}
	const w, h = 12 * vg.Inch, 4.5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align([][]*plot.Plot{{det, hist}}, tiles, dc)
	det.Draw(canvases[0][0])
	hist.Draw(canvases[0][1])
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("eval: plot: %w", err)
	}
	png := vgimg.PngCanvas{Canvas: img}
	if _, err := png.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("eval: plot: %w", err)
	}
	return f.Close()
}

// floorLog keeps zero rates drawable on a log axis.
const floorLog = 1e-5

func detPlot(r *Report) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("DET: %s on %s", r.Embedder, shortName(r.Input))
	p.X.Label.Text = "false accept rate (impostor pairs)"
	p.Y.Label.Text = "false reject rate (genuine pairs)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = floorLog, 1, floorLog, 1
	// Every distinct impostor distance is a step of the curve.
	var pts plotter.XYs
	pr := r.pairs
	step := max(1, len(pr.Impostor)/4000)
	for i := 0; i < len(pr.Impostor); i += step {
		t := pr.Impostor[i]
		far, frr := pr.FAR(t), pr.FRR(t)
		pts = append(pts, plotter.XY{X: math.Max(far, floorLog), Y: math.Max(frr, floorLog)})
	}
	if len(pts) == 0 {
		return p, nil
	}
	line, err := plotter.NewLine(pts)
	if err != nil {
		return nil, fmt.Errorf("eval: plot: %w", err)
	}
	line.Color = color.RGBA{R: 20, G: 80, B: 200, A: 255}
	line.Width = vg.Points(1.5)
	p.Add(line)
	diag, _ := plotter.NewLine(plotter.XYs{{X: floorLog, Y: floorLog}, {X: 1, Y: 1}})
	diag.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
	diag.Color = color.Gray{Y: 150}
	p.Add(diag)
	p.Legend.Add("DET", line)
	if t := float64(r.Calibration.Threshold); t > 0 {
		op, _ := plotter.NewScatter(plotter.XYs{{X: math.Max(pr.FAR(t), floorLog), Y: math.Max(pr.FRR(t), floorLog)}})
		op.GlyphStyle.Color = color.RGBA{R: 200, A: 255}
		op.GlyphStyle.Radius = vg.Points(4)
		op.GlyphStyle.Shape = draw.CircleGlyph{}
		p.Add(op)
		p.Legend.Add(fmt.Sprintf("calibrated t=%.3f", t), op)
	}
	p.Legend.Left = true
	p.Legend.XOffs, p.Legend.YOffs = vg.Millimeter*3, vg.Millimeter*3
	return p, nil
}

func histPlot(r *Report) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("L2 distances: %d genuine, %d impostor pairs", len(r.pairs.Genuine), len(r.pairs.Impostor))
	p.X.Label.Text = "L2 distance"
	p.Y.Label.Text = "density"
	for _, s := range []struct {
		name string
		v    []float64
		c    color.NRGBA
	}{{"impostor", r.pairs.Impostor, color.NRGBA{R: 220, G: 60, B: 40, A: 150}}, {"genuine", r.pairs.Genuine, color.NRGBA{R: 20, G: 140, B: 60, A: 150}}} {
		if len(s.v) == 0 {
			continue
		}
		h, err := plotter.NewHist(plotter.Values(s.v), 60)
		if err != nil {
			return nil, fmt.Errorf("eval: plot: %w", err)
		}
		h.Normalize(1)
		h.FillColor = s.c
		h.LineStyle.Width = 0
		p.Add(h)
		p.Legend.Add(s.name, h)
	}
	if t := r.Calibration.Threshold; t > 0 {
		top := p.Y.Max
		if top <= 0 {
			top = 1
		}
		l, _ := plotter.NewLine(plotter.XYs{{X: t, Y: 0}, {X: t, Y: top}})
		l.Color = color.Black
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("calibrated t=%.3f", t), l)
	}
	p.Legend.Top = true
	return p, nil
}

// shortName keeps the last two elements of a path (asian/kpop).
func shortName(p string) string {
	p = filepath.ToSlash(filepath.Clean(p))
	parts := strings.Split(p, "/")
	if len(parts) > 2 {
		parts = parts[len(parts)-2:]
	}
	return strings.Join(parts, "/")
}
