package rewrap

import (
	"strings"
	"testing"
)

// TestDeniedActionReadsKMSMessages: the hint of a KMS AccessDenied names
// the action and key the message names, in the forms KMS writes them
// (identity policy, key policy, explicit deny, assumed roles).
func TestDeniedActionReadsKMSMessages(t *testing.T) {
	const key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	for _, tc := range []struct{ msg, action, hint string }{
		{"User: arn:aws:sts::111122223333:assumed-role/rotator-run/i-0abc is not authorized to perform: kms:ReEncryptFrom on resource: " + key +
			" because no identity-based policy allows the kms:ReEncryptFrom action", "kms:ReEncryptFrom", "grant kms:ReEncryptFrom on the source key " + key},
		{"User: arn:aws:iam::111122223333:user/ops is not authorized to perform: kms:ReEncryptTo on resource: " + key +
			" because no resource-based policy allows the kms:ReEncryptTo action", "kms:ReEncryptTo", "grant kms:ReEncryptTo on the destination key " + key},
		{"User: arn:aws:iam::111122223333:user/ops is not authorized to perform: kms:Encrypt on resource: " + key +
			" with an explicit deny in a resource-based policy", "kms:Encrypt", "grant kms:Encrypt on the destination key " + key},
		{"User: arn:aws:iam::111122223333:user/ops is not authorized to perform: kms:DescribeKey on resource: " + key, "kms:DescribeKey", "grant kms:DescribeKey on " + key},
	} {
		action, resource, ok := deniedAction(tc.msg)
		if !ok || action != tc.action || resource != key {
			t.Errorf("deniedAction(%q) = %q %q %v", tc.msg, action, resource, ok)
			continue
		}
		if h := grantHint(action, resource); !strings.HasPrefix(h, tc.hint) {
			t.Errorf("grantHint(%s) = %q, want it to start with %q", action, h, tc.hint)
		}
	}
	if _, _, ok := deniedAction("Access to KMS is not allowed"); ok {
		t.Error("a message that names no action was read as naming one")
	}
}
