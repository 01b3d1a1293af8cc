package extensions

// SetBulkLimit lowers the most machines one bulk operation may select.
func (s *Service) SetBulkLimit(n int) { s.bulkLimit = n }
