package capability

import (
	"context"
	"encoding/json"
	"time"

	"github.com/corralhq/corral/internal/store"
)

// Origin is who asked for an operation that a machine carries out later (an
// extension install, a run command, an assessment, a remediation, a scan):
// the request's correlation id, caller and action. A context keeps it with
// the operation, so that when the machine reports the outcome it is logged
// in the caller's name and linked to the request by the correlation id.
type Origin struct {
	CorrelationID string `json:"correlationId,omitempty"`
	CallerID      string `json:"callerId,omitempty"`
	Caller        string `json:"caller,omitempty"`
	CallerType    string `json:"callerType,omitempty"`
	SourceIP      string `json:"sourceIp,omitempty"`
	// Action is the RBAC action of the request.
	Action string `json:"action,omitempty"`
}

type originKey struct{}

// WithOrigin returns ctx carrying o (the API sets it for every request).
func WithOrigin(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

// OriginFrom returns the origin ctx carries (the zero Origin if none: an
// operation the server started itself, e.g. from a schedule).
func OriginFrom(ctx context.Context) Origin {
	o, _ := ctx.Value(originKey{}).(Origin)
	return o
}

// Encode is the origin as stored with an operation (nil for the zero one).
func (o Origin) Encode() []byte {
	if o == (Origin{}) {
		return nil
	}
	b, _ := json.Marshal(o)
	return b
}

// DecodeOrigin reads a stored origin; anything unreadable is the zero one.
func DecodeOrigin(b []byte) Origin {
	var o Origin
	_ = json.Unmarshal(b, &o)
	return o
}

// Outcome is the final result of an operation a machine carried out.
type Outcome struct {
	Origin Origin
	// Action defaults to Origin.Action.
	Action string
	// Scope is the resource the operation was about.
	Scope string
	// Result is wire.ResultSucceeded or wire.ResultFailed.
	Result string
	// Message says what happened, with the machine's reason when it failed.
	Message string
	At      time.Time
	// ReportID, for an event a machine reported that has no state of its
	// own to make a second delivery harmless (the agent sends a report
	// again when it did not see it acknowledged), is that report's id: an
	// outcome of the same caller, action and scope recorded for it before
	// is not recorded again. The entry's correlation id is "report:ID".
	ReportID string
	// Once records the outcome only if the log has none yet for the same
	// request (correlation id, caller, action and scope): for a final
	// state reported again, which the server that first applied it may not
	// have lived to log (it was killed between the two writes).
	Once bool
}

// Outcomes records outcomes in the activity log (the activity context
// implements it; other contexts get it at assembly).
type Outcomes interface {
	RecordOutcome(ctx context.Context, o Outcome) error
	// OutcomeEntry is the entry RecordOutcome would write for o (ReportID
	// and Once aside), for a context that writes it in the transaction of
	// the state change it reports.
	OutcomeEntry(o Outcome) store.ActivityEntry
}
