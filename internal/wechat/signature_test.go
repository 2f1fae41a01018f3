package wechat

import "testing"

func TestSignatureMatchesPublishedVectors(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"plain signature of vector C", Signature(vectorC.token, vectorC.timestamp, vectorC.nonce), "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"},
		{"msg_signature of vector C covers Encrypt", MsgSignature(vectorC.token, vectorC.timestamp, vectorC.nonce, vectorC.encrypt), vectorC.msgSignature},
		{"msg_signature of vector B covers echostr", MsgSignature(vectorB.token, vectorB.timestamp, vectorB.nonce, vectorB.echostr), vectorB.msgSignature},
		{"argument order does not matter because parts are sorted", Signature(vectorC.nonce, vectorC.token, vectorC.timestamp), "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"},
		{"msg_signature argument order does not matter", MsgSignature(vectorC.encrypt, vectorC.nonce, vectorC.timestamp, vectorC.token), vectorC.msgSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %s, want %s", tt.got, tt.want)
			}
		})
	}
}

func TestSignatureChangesWithEveryInput(t *testing.T) {
	base := MsgSignature("token", "1409735669", "1320562132", "ENC")
	for name, sig := range map[string]string{
		"token":     MsgSignature("token2", "1409735669", "1320562132", "ENC"),
		"timestamp": MsgSignature("token", "1409735670", "1320562132", "ENC"),
		"nonce":     MsgSignature("token", "1409735669", "1320562133", "ENC"),
		"encrypt":   MsgSignature("token", "1409735669", "1320562132", "ENd"),
	} {
		if sig == base {
			t.Errorf("changing %s left msg_signature unchanged", name)
		}
	}
}

func TestSignatureEqual(t *testing.T) {
	sig := "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"identical signatures are equal", sig, sig, true},
		{"one differing character is unequal", sig, sig[:39] + "b", false},
		{"a prefix is unequal", sig, sig[:20], false},
		{"empty is unequal to a signature", "", sig, false},
		{"upper-case hex is not accepted", sig, "16120EC1B8DBB870F510D87CE6BC2463EAE6CA1A", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SignatureEqual(tt.a, tt.b); got != tt.want {
				t.Errorf("SignatureEqual = %v, want %v", got, tt.want)
			}
		})
	}
}
