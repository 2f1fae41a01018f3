package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"slices"
)

// writePlot draws predicted (y) against actual (x) wait for kefu: grey
// grid every meanService, red diagonal y = x, blue points the mean
// prediction, light orange ticks the P90 of the same customers.
func writePlot(path string, pts []point) error {
	const size, margin = 640, 20
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	// Axis range: the 99th percentile of actual waits, so that a few
	// extreme waits do not squash the body.
	xs := make([]float64, len(pts))
	for i, p := range pts {
		xs[i] = p.actual
	}
	slices.Sort(xs)
	top := math.Max(xs[int(0.99*float64(len(xs)-1))], meanService.Seconds())
	scale := float64(size-2*margin) / top
	toPix := func(x, y float64) (int, int) {
		return margin + int(x*scale), size - margin - int(y*scale)
	}
	set := func(x, y int, c color.RGBA) {
		if x >= 0 && y >= 0 && x < size && y < size {
			img.SetRGBA(x, y, c)
		}
	}
	grey := color.RGBA{220, 220, 220, 255}
	for g := 0.0; g <= top; g += meanService.Seconds() {
		for k := margin; k < size-margin; k++ {
			x, _ := toPix(g, 0)
			_, y := toPix(0, g)
			set(x, k, grey)
			set(k, y, grey)
		}
	}
	black := color.RGBA{0, 0, 0, 255}
	for k := margin; k <= size-margin; k++ {
		set(margin, k, black)
		set(k, size-margin, black)
	}
	red := color.RGBA{220, 30, 30, 255}
	for v := 0.0; v <= top; v += top / 1000 {
		x, y := toPix(v, v)
		set(x, y, red)
	}
	orange := color.RGBA{250, 190, 120, 255}
	blue := color.RGBA{30, 60, 200, 255}
	for _, p := range pts {
		x, y := toPix(p.actual, p.p90)
		set(x, y, orange)
	}
	for _, p := range pts {
		x, y := toPix(p.actual, p.predicted)
		set(x, y, blue)
		set(x+1, y, blue)
		set(x, y+1, blue)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
