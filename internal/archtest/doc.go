// Package archtest guards the architecture: what each binary may import,
// that every package documents itself, and the import rules between the
// server's bounded contexts, the store and everything else.
//
// The rules are data (Rules, AncestorContracts) checked by functions over
// an import graph (LoadGraph parses import clauses, without the go tool),
// so the same checks run on the repository and on the deliberately broken
// fixture under testdata/, which proves each rule fails when broken.
package archtest
