package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/store"
	"github.com/pgsignal/pgsignal/replication"
)

// legacyKeys returns the commits that keep the keys earlier versions gave
// them (cdc.LegacyKeys), recording them on this version's first run: in
// <schema>.legacy_keys in full mode; in read-only mode, which writes
// nothing to the database, in the file next to the dead letter file
// (legacyKeysFile). Losing that file records them again at the next
// start: only the events in flight then (sent, not confirmed) of commits
// on a timeline above the recorded one, or of transformed rows that became
// one event, are sent again under other keys.
func legacyKeys(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config, full bool, systemID string, timeline uint32) (cdc.LegacyKeys, error) {
	if full {
		return store.RecordLegacyKeys(ctx, pool, cfg.Source.Schema, cfg.Source.Slot, timeline)
	}
	path := legacyKeysFile(cfg)
	id := systemID + "/" + cfg.Source.Slot
	type record struct {
		Before   string `json:"before_lsn"`
		Timeline uint32 `json:"timeline"`
	}
	recs := map[string]record{}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return cdc.LegacyKeys{}, fmt.Errorf("read %s (where this version first ran): %w", path, err)
	default:
		if err := json.Unmarshal(data, &recs); err != nil {
			return cdc.LegacyKeys{}, fmt.Errorf("read %s (where this version first ran; delete it if it is damaged, and it is recorded anew): %w", path, err)
		}
	}
	if r, ok := recs[id]; ok {
		lsn, err := cdc.ParseLSN(r.Before)
		if err != nil {
			return cdc.LegacyKeys{}, fmt.Errorf("read %s: %w", path, err)
		}
		return cdc.LegacyKeys{Before: lsn, Timeline: r.Timeline}, nil
	}
	lsn, err := replication.CurrentWALLSN(ctx, pool)
	if err != nil {
		return cdc.LegacyKeys{}, err
	}
	recs[id] = record{Before: lsn.String(), Timeline: timeline}
	if err := writeFileSynced(path, recs); err != nil {
		return cdc.LegacyKeys{}, fmt.Errorf("record where this version first ran in %s: %w", path, err)
	}
	return cdc.LegacyKeys{Before: lsn, Timeline: timeline}, nil
}

// legacyKeysFile is the read-only mode's record of where this version
// first ran: next to the dead letter file.
func legacyKeysFile(cfg *config.Config) string {
	return cfg.Sink.DeadLetterFile + ".legacy-keys.json"
}

// writeFileSynced replaces path with v as JSON, durably: a temporary file
// written, synced and renamed over it, and the directory synced.
func writeFileSynced(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
