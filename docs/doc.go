// Package docs holds only the documentation tests: they check that every
// translated document (*.zh-CN.md) keeps the structure, code and links of its
// English original, so the two cannot drift apart unnoticed.
package docs
