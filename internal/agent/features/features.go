// Package features is the one list of agent features: corral-agent run,
// corral dev's local agent and the test agents all run Default(). Adding a
// capability to the agent is one line here and a package of its own that
// implements feature.Feature (see docs/adding-a-capability.md).
package features

import (
	"github.com/corralhq/corral/internal/agent/access"
	"github.com/corralhq/corral/internal/agent/extensions"
	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/guestconfig"
	"github.com/corralhq/corral/internal/agent/protection"
	"github.com/corralhq/corral/internal/agent/runcommand"
	"github.com/corralhq/corral/internal/agent/updates"
)

// Default returns a fresh instance of every feature the agent runs, in the
// order they are started and handed each desired state.
func Default() []feature.Feature {
	return []feature.Feature{
		extensions.New(),
		runcommand.New(),
		protection.New(),
		updates.New(),
		access.New(),
		guestconfig.New(),
	}
}
