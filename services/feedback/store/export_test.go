package store

// SeedGenerated gives the external benchmarks the bulk seeding path.
var SeedGenerated = seedGenerated
