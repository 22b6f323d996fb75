// Package app wires pgsignal's stages into one running pipeline: the
// replication stream, the mapper, the sink, the checkpoint tracker and its
// store. It holds no logic of its own beyond start-up order and shutdown;
// cmd/pgsignal, the demo and the end-to-end tests all run it.
package app
