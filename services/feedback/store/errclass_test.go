package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kefu-io/kefu/services/feedback/store"
)

func TestIsDataErrorTellsRejectedDataFromOutages(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "22001"}, true}, // string data right truncation
		{fmt.Errorf("upsert: %w", &pgconn.PgError{Code: "23505"}), true},
		{&pgconn.PgError{Code: "08006"}, false}, // connection failure
		{&pgconn.PgError{Code: "57P01"}, false}, // admin shutdown (failover)
		{&pgconn.PgError{Code: "40001"}, false}, // serialization failure
		{&pgconn.PgError{Code: "53100"}, false}, // disk full
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{context.DeadlineExceeded, false},
		{errors.New("driver: bad connection"), false},
	} {
		if got := store.IsDataError(c.err); got != c.want {
			t.Errorf("IsDataError(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
