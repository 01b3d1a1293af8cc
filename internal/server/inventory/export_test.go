package inventory

// AppliedWaiting is how many applied reports wait to be recorded together.
func (s *Service) AppliedWaiting() int { return s.applied.Waiting() }
