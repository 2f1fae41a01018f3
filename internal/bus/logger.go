package bus

import (
	"errors"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// WatermillLogger adapts zap to watermill's LoggerAdapter (watermill has
// no zap adapter of its own). Watermill's Trace level maps to zap's Debug
// only when traces are enabled, because it logs every message at Trace.
type WatermillLogger struct {
	log   *zap.Logger
	trace bool
}

// NewWatermillLogger returns an adapter writing to log.
func NewWatermillLogger(log *zap.Logger, trace bool) *WatermillLogger {
	return &WatermillLogger{log: log, trace: trace}
}

func zapFields(fields watermill.LogFields) []zap.Field {
	out := make([]zap.Field, 0, len(fields))
	for k, v := range fields {
		out = append(out, zap.Any(k, v))
	}
	return out
}

func (l *WatermillLogger) Error(msg string, err error, fields watermill.LogFields) {
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
		// A subscription's connection is drained before watermill closes
		// it (see Subscription.Close): its unsubscribes then find it closed.
		l.log.Debug(msg, append(zapFields(fields), zap.Error(err))...)
		return
	}
	l.log.Error(msg, append(zapFields(fields), zap.Error(err))...)
}

func (l *WatermillLogger) Info(msg string, fields watermill.LogFields) {
	l.log.Info(msg, zapFields(fields)...)
}

func (l *WatermillLogger) Debug(msg string, fields watermill.LogFields) {
	l.log.Debug(msg, zapFields(fields)...)
}

func (l *WatermillLogger) Trace(msg string, fields watermill.LogFields) {
	if l.trace {
		l.log.Debug(msg, zapFields(fields)...)
	}
}

func (l *WatermillLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return &WatermillLogger{log: l.log.With(zapFields(fields)...), trace: l.trace}
}
