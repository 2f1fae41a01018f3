package notifier

import (
	"crypto/sha256"
	"encoding/hex"
)

// What the notifier keeps in the kefu_notified bucket:
//
//	cause.<h>     one per event that caused (or could have caused) a
//	              message; h = sha256(ce-id)[:16] in hex, because ce-ids
//	              contain characters KV keys do not allow ("@")
//	customer.<h>  one per customer; h = sha256(openid)[:16]: the wait
//	              message last sent (waitRecord), shared by every notifier
//	              process
//
// Where a customer's session stands is not kept here: the notifier reads
// and records it in the customer read model (internal/customers).

func causeKey(ceID string) string { return "cause." + shortHash(ceID) }

func customerKey(openid string) string { return "customer." + shortHash(openid) }

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}
