package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/chromedp/chromedp"
)

// browserRun puts n customers in the queue and loads the console in
// headless chromium: the page marks when the first full state is on screen
// (window.KEFU.metrics.readyAt, milliseconds from navigation start).
func browserRun(ctx context.Context, pub *publisher, base string, n, loads int, chromium string) error {
	for i := pub.customers; i < n; i++ {
		if _, err := pub.publish(ctx, fmt.Sprintf("c-%05d", i), i+1); err != nil {
			return err
		}
	}
	cookie, err := signIn(base)
	if err != nil {
		return err
	}
	size, err := waitFor(base, cookie, n)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-console-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chromium), chromedp.UserDataDir(dir),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1440, 1000))
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	err = chromedp.Do(bctx, chromedp.Navigate(base),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SetValue(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#signin-form button")),
		chromedp.Poll[chromedp.Void](`document.body.dataset.ready === "1"`, chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		return fmt.Errorf("sign in in the browser: %w", err)
	}
	var times []float64
	var parts []string
	var rows int
	for range loads {
		err := chromedp.Do(bctx, chromedp.Navigate(base),
			chromedp.Poll[chromedp.Void](`document.body.dataset.ready === "1"`, chromedp.WithPollingTimeout(60*time.Second)))
		if err != nil {
			return err
		}
		ready, err := chromedp.Run(bctx, chromedp.Evaluate[float64](`window.KEFU.metrics.readyAt`))
		if err != nil {
			return err
		}
		steps, err := chromedp.Run(bctx, chromedp.Evaluate[[]float64](`[performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd, KEFU.metrics.signedInAt, KEFU.metrics.stateAt]`))
		if err == nil && len(steps) == 3 {
			parts = append(parts, fmt.Sprintf("page %.0f, signed in %.0f, state arrived %.0f, on screen %.0f", steps[0], steps[1], steps[2], ready))
		}
		if rows, err = chromedp.Run(bctx, chromedp.Evaluate[int](`window.KEFU.st.waiting.size`)); err != nil {
			return err
		}
		times = append(times, ready)
	}
	slices.Sort(times)
	fmt.Printf("browser: queue view with %d waiting customers (state %d KiB), %d loads in headless chromium:\n", rows, size>>10, loads)
	fmt.Printf("  navigation start → whole state on screen: median %.0f ms, worst %.0f ms, best %.0f ms\n", times[len(times)/2], times[len(times)-1], times[0])
	for _, p := range parts {
		fmt.Printf("  load (ms from navigation start): %s\n", p)
	}
	return nil
}
