package wechattest

import "fmt"

// Error codes the fake returns. The package documentation says which come
// from WeChat's documentation and which situations are mapped by our choice.
const (
	CodeSystemBusy         = -1
	CodeInvalidCredential  = 40001 // access_token invalid or not the latest; wrong secret on cgi-bin/token
	CodeInvalidGrantType   = 40002
	CodeInvalidOpenID      = 40003
	CodeInvalidFileType    = 40005
	CodeInvalidMessageType = 40008
	CodeInvalidMediaSize   = 40009
	CodeInvalidAppID       = 40013
	CodeInvalidAppSecret   = 40125
	CodeMissingAccessToken = 41001
	CodeMissingMedia       = 41005
	CodeAccessTokenExpired = 42001
	CodeRequirePOST        = 43002
	CodeEmptyPostData      = 44002
	CodeEmptyContent       = 44004
	CodeDailyQuota         = 45009 // stable_token: more than 20 forced refreshes today
	CodeFrequencyLimit     = 45011 // stable_token: forced refresh within 30 s of the last
	CodeReplyTimeLimit     = 45015
	CodeResponseCountLimit = 45047
	CodeDataFormatError    = 47001
	CodeKFUnavailable      = 65400
	CodeInvalidKFAccount   = 65401
	CodeInvalidNickname    = 65403
	CodeIllegalKFAccount   = 65404
	CodeKFAccountLimit     = 65405
	CodeKFAccountExists    = 65406
	CodeNoSession          = 65413
	CodeServedByOtherKF    = 65414
	CodeKFOffline          = 65415
	CodeInvalidQueryParams = 65416
	CodeMsgRecordSpan      = 65417 // getmsglist: endtime − starttime over 24 h
)

// errmsgs are WeChat's English errmsg texts (as the API returns them, not
// the Chinese documentation text).
var errmsgs = map[int]string{
	CodeSystemBusy:         "system error",
	CodeInvalidCredential:  "invalid credential, access_token is invalid or not latest",
	CodeInvalidGrantType:   "invalid grant_type",
	CodeInvalidOpenID:      "invalid openid",
	CodeInvalidFileType:    "invalid file type",
	CodeInvalidMessageType: "invalid message type",
	CodeInvalidMediaSize:   "invalid image size",
	CodeInvalidAppID:       "invalid appid",
	CodeInvalidAppSecret:   "invalid appsecret",
	CodeMissingAccessToken: "access_token missing",
	CodeMissingMedia:       "media data missing",
	CodeAccessTokenExpired: "access_token expired",
	CodeRequirePOST:        "require POST method",
	CodeEmptyPostData:      "empty post data",
	CodeEmptyContent:       "empty content",
	CodeReplyTimeLimit:     "response out of time limit or subscription is canceled",
	CodeResponseCountLimit: "response count limit",
	CodeDataFormatError:    "data format error",
	CodeKFUnavailable:      "api unavailable: customer service not upgraded",
	CodeInvalidKFAccount:   "invalid kf_account",
	CodeInvalidNickname:    "invalid nickname",
	CodeIllegalKFAccount:   "illegal kf_account",
	CodeKFAccountLimit:     "kf_account count exceeded",
	CodeKFAccountExists:    "kf_account exists",
	CodeNoSession:          "no session for the customer",
	CodeServedByOtherKF:    "customer is served by another kf",
	CodeKFOffline:          "kf offline",
	CodeInvalidQueryParams: "invalid query parameters",
	CodeMsgRecordSpan:      "query time range exceeds the limit",
}

// APIError is a WeChat errcode/errmsg pair. The API answers it as JSON; the
// Go control methods return it as an error, so a test can check the code
// with errors.As.
type APIError struct {
	Code int    `json:"errcode"`
	Msg  string `json:"errmsg"`
}

func (e *APIError) Error() string { return fmt.Sprintf("wechat errcode %d: %s", e.Code, e.Msg) }

// apiErr builds the error for code with WeChat's message, plus detail when
// the fake has something more specific to say.
func apiErr(code int, detail string) *APIError {
	msg, ok := errmsgs[code]
	if !ok {
		msg = "error"
	}
	if detail != "" {
		msg += ": " + detail
	}
	return &APIError{Code: code, Msg: msg}
}

// asError turns a possibly nil *APIError into an error without producing a
// non-nil interface holding a nil pointer.
func asError(e *APIError) error {
	if e == nil {
		return nil
	}
	return e
}
