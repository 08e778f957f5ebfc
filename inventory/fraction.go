package inventory

// Fraction returns how much of the report Stream has read, by the sizes
// of its data files in the manifest (files a resumed run skips count as
// read): from 0 to 1, and 0 before the manifest is read. Multiplied out
// over the items delivered so far it estimates the report's total before
// the end, for a progress display.
func (s *S3Inventory) Fraction() float64 {
	total := s.totalBytes.Load()
	if total <= 0 {
		return 0
	}
	return min(float64(s.readBytes.Load())/float64(total), 1)
}

// Fraction returns how much of the list Stream has read, by bytes: from 0
// to 1, and 0 before the list is opened (see S3Inventory.Fraction).
func (l *CSVList) Fraction() float64 {
	total := l.totalBytes.Load()
	if total <= 0 {
		return 0
	}
	return min(float64(l.readBytes.Load())/float64(total), 1)
}
