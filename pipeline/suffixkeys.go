package pipeline

import (
	"fmt"
	"strings"

	"github.com/rotator-dev/rotator/inventory"
)

// NoteUnpairedSuffix completes the outcome of an item the inventory flagged
// as ending with the instruction suffix although no object KEY exists
// (inventory.Item.UnpairedSuffix; Env.Source asks for them). Such an item
// is processed as any object: an encrypted object whose own key ends in
// the suffix is rotated like the others, and an instruction file (its
// metadata says so) or an unencrypted object is skipped. Its report row
// then says why the key is there:
//   - skipped as not encrypted or as an instruction file: code
//     CodeUnpairedInstructionFile, with what to do;
//   - any other outcome: its message notes that the key ends with the
//     suffix.
//
// Any other item's outcome is returned unchanged. Process calls it on
// every outcome.
func (c *Core) NoteUnpairedSuffix(it inventory.Item, o Outcome) Outcome {
	if !it.UnpairedSuffix {
		return o
	}
	suffix := c.suffix()
	note := fmt.Sprintf("the key ends with %s, yet no object %s exists", suffix, strings.TrimSuffix(it.Key, suffix))
	if o.Status == StatusSkipped && o.ErrorCode == CodeNotEncrypted {
		o.ErrorCode = CodeUnpairedInstructionFile
		o.Message = note + ": an instruction file its object outlived, or an object that is not encrypted; left as it is (delete it once its object is known to be gone)"
		return o
	}
	if o.Message == "" {
		o.Message = note + ": processed as an object"
	} else {
		o.Message += " (" + note + ": processed as an object)"
	}
	return o
}
