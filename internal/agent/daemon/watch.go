package daemon

import (
	"log/slog"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// watchFile signals on the returned channel whenever path may have changed:
// it watches path's directory, since `config set` replaces the file by
// renaming a new one over it. Where inotify is unavailable the channel
// never fires and the caller's poll is the only check. stop ends the watch.
func watchFile(path string, log *slog.Logger) (<-chan struct{}, func()) {
	out := make(chan struct{}, 1)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("cannot watch the local configuration with inotify; polling it", "err", err)
		return out, func() {}
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		log.Warn("cannot watch the local configuration with inotify; polling it", "err", err)
		w.Close()
		return out, func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Clean(ev.Name) == filepath.Clean(path) {
					kick(out)
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
				kick(out) // events may have been lost: look again
			}
		}
	}()
	return out, func() { w.Close(); <-done }
}
