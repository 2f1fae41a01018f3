package storetest

import (
	"context"
	"testing"
	"time"
)

// shanghai is the zone Tucao writes its times in.
var shanghai = time.FixedZone("CST", 8*3600)

// t0 is the start of every scenario.
var t0 = time.Date(2025, 3, 3, 9, 0, 0, 0, shanghai)

// Run runs the store contract against backend. Every case gets its own
// empty database and runs in parallel with the others.
func Run(t *testing.T, backend Backend) {
	cases := []struct {
		name string
		run  func(t *testing.T, backend Backend)
	}{
		{"upserted posts are listed whole, newest first", testUpsertThenList},
		{"re-upserting the same version changes nothing", testSameVersionIsNoOp},
		{"a newer version replaces the stored one", testNewerVersionReplaces},
		{"an older version arriving late never overwrites a newer one", testOlderVersionNeverOverwrites},
		{"of duplicates in one batch the newest version is kept", testDuplicatesInBatch},
		{"an invalid post rejects the whole batch", testInvalidPostRejectsBatch},
		{"text no database column can hold is still stored and returned whole", testUnstorableText},
		{"filters select by openid, created_at range and content", testPostFilters},
		{"the limit defaults to 50 and is capped at 500", testLimit},
		{"pagination visits every post once in order while posts arrive", testPostPagination},
		{"a forged cursor or one of the other list is rejected", testInvalidCursor},
		{"filter values are matched literally, never as SQL or wildcards", testFiltersAreLiteral},
		{"a post after a closed session is linked to it", testPostAfterSessionIsLinked},
		{"a post before any session is not linked", testPostBeforeSessionIsNotLinked},
		{"a session fact arriving after the post links it at query time", testLateSessionFactLinks},
		{"a post is linked to the latest session closed before it", testLatestSessionWins},
		{"a post beyond the link window is not linked", testLinkWindow},
		{"another customer's session never links", testOtherCustomerNeverLinks},
		{"a post under the session's pseudonym is linked to it, as one under its openid", testPostUnderPseudonymIsLinked},
		{"a post under another customer's pseudonym never links", testOtherPseudonymNeverLinks},
		{"sessions list the posts under their pseudonym", testSessionsListPseudonymousPosts},
		{"the openid filter finds the customer's posts under their pseudonyms", testOpenIDFilterFindsPseudonymousPosts},
		{"facts stored without a pseudonym get it filled and then link", testFillPseudonyms},
		{"a post naming its session is linked to it, not to a later one", testNamedSessionWinsOverTheLatest},
		{"a session named in another customer's post never links", testNamedSessionOfAnotherCustomerNeverLinks},
		{"a named session links beyond the window and when its fact comes late", testNamedSessionLinksBeyondTheWindowAndLate},
		{"sessions are listed newest first with their linked posts", testSessionsWithLinkedPosts},
		{"a session starts at the created fact since the previous close", testSessionStart},
		{"recording the same session fact twice stores it once", testSessionFactIdempotent},
		{"an invalid session fact rejects the whole batch", testInvalidSessionFact},
		{"sessions filter by openid, agent and closed_at and paginate", testSessionFiltersAndPagination},
		{"reopening keeps the data and applies no migration again", testReopen},
		{"stores opened together apply each migration once", testConcurrentOpen},
		{"ping answers while the store is open", testPing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, backend)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}
