package wire

// Paths and bodies of the identity hardening (issue 7).

// PathMyPassword is where a signed-in user changes their own password.
const PathMyPassword = "/api/v1/me/password"

// PasswordChange is the body of PUT /api/v1/me/password: the current
// password proves it is the user, not someone holding their session.
type PasswordChange struct {
	CurrentPassword string `json:"currentPassword"`
	NewPassword     string `json:"newPassword"`
}

// PasswordSet is the body of PUT /api/v1/users/{name}/password: an
// administrator sets another user's password, optionally to be changed at
// the next sign-in.
type PasswordSet struct {
	Password           string `json:"password"`
	MustChangePassword bool   `json:"mustChangePassword,omitempty"`
}

// UserUpdate is the body of PATCH /api/v1/users/{name}. Disabling a user
// ends their sessions at once and refuses their sign-ins and API tokens
// until enabled again.
type UserUpdate struct {
	Disabled *bool `json:"disabled,omitempty"`
}

// ReportLocalConfigChanged is the report kind an agent sends when its local
// configuration file was changed other than by `corral-agent config` (its
// marker does not match its content): body LocalConfigChanged. The control
// plane records it in the activity log.
const ReportLocalConfigChanged = "localConfigChanged"

// LocalConfigChanged says the agent found its local configuration changed
// outside `corral-agent config`: by hand, by a script, or by a command the
// control plane ran as root.
type LocalConfigChanged struct {
	// Detail says what the agent found (no marker, a marker that does not
	// match).
	Detail string `json:"detail"`
	// Config is the configuration now in force.
	Config AgentConfig `json:"config"`
}
