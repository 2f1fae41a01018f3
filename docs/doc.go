// Package docs holds only the documentation tests: they check that every
// translated document (*.zh-CN.md) keeps the structure, code and links of its
// English original, so the two cannot drift apart unnoticed; that
// openapi.yaml and asyncapi.json are valid against the official OpenAPI 3.1
// and AsyncAPI 3.0.0 schemas (vendored under schemas/); and that every route
// kefu's code registers is in openapi.yaml and every operation there is
// served. internal/app checks openapi.yaml against the live answers.
package docs
