package app

import (
	"context"

	"github.com/kefu-io/kefu/internal/demo"
)

// demoTraffic is the traffic `kefu demo` runs on its simulated desk; tests
// replace it to drive the desk step by step.
var demoTraffic = (*demo.Env).Simulate

// startDemo starts the demo around the running role: it prints how to use
// it and every event, and starts the traffic.
func (rt *runtime) startDemo(ctx context.Context) error {
	return rt.demo.Start(ctx, demo.Host{
		Out:          rt.stdout,
		Config:       rt.cfg,
		HTTPURL:      rt.httpURL,
		NATSURL:      rt.bus.ClientURL(),
		ConsoleLinks: rt.consoleLinks,
		Listen:       rt.bus.Listen,
		Traffic:      demoTraffic,
	})
}
