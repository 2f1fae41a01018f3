package app

import (
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/kefu-io/kefu/internal/cliui"
	"github.com/kefu-io/kefu/internal/config"
)

// logTimeLayout is how log lines write their time.
const logTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// newLogger is the process's logger, writing to out (stderr): readable
// lines for a person when out is a terminal, JSON for machines otherwise,
// unless KEFU_LOG_FORMAT chooses.
func newLogger(cfg config.Config, out io.Writer) (*zap.Logger, error) {
	return buildLogger(cfg, out, cliui.Detect(out, os.Getenv))
}

// buildLogger is newLogger for a writer connected to term.
func buildLogger(cfg config.Config, out io.Writer, term cliui.Terminal) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("KEFU_LOG_LEVEL: %w", err)
	}
	format := cfg.LogFormat
	if format == "" {
		format = "json"
		if term.Is {
			format = "console"
		}
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	// RFC 3339 with milliseconds: "+08:00", not ISO8601TimeEncoder's "+0800",
	// like every other time kefu shows.
	encCfg.EncodeTime = zapcore.TimeEncoderOfLayout(logTimeLayout)
	var enc zapcore.Encoder
	if format == "console" {
		// Colour codes are noise in a file or a terminal without colour.
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		if term.Color {
			encCfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		}
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(out), level)
	return zap.New(core), nil
}
