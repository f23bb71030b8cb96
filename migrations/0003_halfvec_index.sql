-- 0003: the 1:N search index holds half-precision copies of the templates.
--
-- Templates stay full precision in the table (the distances the service decides on are
-- exact); only the HNSW graph holds `halfvec(128)` copies: a third smaller and no slower
-- at equal recall (docs/PERFORMANCE.md, "Half-precision index"). Half precision moves a
-- distance by about 1e-4, far below the 0.05 ambiguity margin, and the service re-ranks
-- the candidates by their exact distance.
--
-- The index keeps the tenant's m / ef_construction (the operator may have rebuilt it with
-- others). Rebuilding takes about 5 minutes per million templates on 2 cores; writes to
-- face_embeddings wait for it, reads do not.
DO $$
DECLARE
    params text;
BEGIN
    SELECT coalesce(array_to_string(c.reloptions, ', '), 'm = 16, ef_construction = 64')
      INTO params
      FROM pg_class c
     WHERE c.oid = 'face_embeddings_hnsw_idx'::regclass;
    DROP INDEX face_embeddings_hnsw_idx;
    EXECUTE format(
        'CREATE INDEX face_embeddings_hnsw_idx ON face_embeddings '
        'USING hnsw ((embedding::halfvec(128)) halfvec_l2_ops) WITH (%s)', params);
END
$$;
