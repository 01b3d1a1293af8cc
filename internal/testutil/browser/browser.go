// Package browser starts headless Chromium for web UI tests through chromedp.
// It is kept apart from testutil so that only browser tests link chromedp.
//
// The browser runs with a fresh profile in t.TempDir(), trusts any server
// certificate (test servers use a throwaway CA), and has every background
// service that would reach the network switched off: test machines may
// have no network at all, and a browser waiting on one makes tests slow.
package browser

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/corralhq/corral/internal/testutil"
)

// New starts Chromium and returns a chromedp context for one tab. The
// browser is stopped when the test ends. The returned context carries
// timeout, so a page that never shows what a test waits for fails the test
// instead of hanging it. Without Chromium the test is skipped (or fails with
// CORRAL_TEST_STRICT=1), see testutil.ChromiumPath.
func New(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(testutil.ChromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox, // test containers usually run as root, where the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.IgnoreCertErrors,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,InterestFeedContentSuggestions,CertificateTransparencyComponentUpdater"),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
	}
	lg := &testLog{t: t}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithErrorf(lg.printf))
	t.Cleanup(func() {
		lg.stop()
		cancelTab()
		cancelAlloc()
	})
	// The first call starts the browser and ties it to ctx, which must carry
	// no timeout (chromedp would stop the browser with it). Starting it here
	// makes a browser that cannot start fail with a clear message.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	tctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(cancelTimeout)
	return tctx
}

// testLog forwards chromedp's errors to the test log until the test ends;
// chromedp's goroutines may still report while the browser shuts down, when
// t.Logf would panic.
type testLog struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (l *testLog) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Logf("chromedp: "+format, args...)
	}
}

func (l *testLog) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}
