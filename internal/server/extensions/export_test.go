package extensions

// SetBulkLimit lowers the most machines one bulk operation may select.
func (s *Service) SetBulkLimit(n int) { s.bulkLimit = n }

// ReportsWaiting is how many extension reports wait to be applied together.
func (s *Service) ReportsWaiting() int { return s.reports.Waiting() }
