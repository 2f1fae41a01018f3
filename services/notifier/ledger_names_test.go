package notifier

import "github.com/kefu-io/kefu/internal/sendonce"

// The names the notifier's tests give the records of package sendonce.
type causeRecord = sendonce.Record

const (
	stateSending   = sendonce.StateSending
	stateSent      = sendonce.StateSent
	stateFailed    = sendonce.StateFailed
	unknownOutcome = sendonce.CrashedErrMsg
)

var (
	encodeRecord = sendonce.Encode
	decodeRecord = sendonce.Decode
)
