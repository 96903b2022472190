// Package static holds the files Pulse serves to browsers, embedded in the
// binary so that Pulse needs no CDN and no files beside it: the tracker
// (pulse.js), the dashboard's script and styles, the demo page, and echarts
// vendored from its npm package with its licence.
package static

import (
	"embed"
	"net/http"
)

// FS holds the files.
//
//go:embed pulse.js quote.js overlay.js dashboard.js visitor.js dashboard.css demo.html vendor
var FS embed.FS

// Handler serves FS. Files are small and change only with a release, so
// browsers may cache them for an hour and must revalidate after.
func Handler() http.Handler {
	files := http.FileServerFS(FS)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}
