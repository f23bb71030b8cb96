-- 0003: the 1:N search index holds half-precision copies of the templates.
--
-- Templates stay full precision in the table (the distances the service decides on are
-- exact); only the HNSW graph holds `halfvec(128)` copies: a third smaller and no slower
-- at equal recall (docs/PERFORMANCE.md, "Half-precision index"). Half precision moves a
-- distance by about 1e-4, far below the 0.05 ambiguity margin, and the service re-ranks
-- the candidates by their exact distance.
--
-- The new index keeps the tenant's m / ef_construction (the operator may have rebuilt the
-- old one with others). It is built beside the old one first, so searches keep using the
-- old index meanwhile (the build blocks only writes to face_embeddings: about 5 minutes
-- per million templates on 2 cores); the old one is dropped at the end, which waits only
-- for the searches running at that moment.
DO $$
DECLARE
    params text;
BEGIN
    SELECT coalesce(array_to_string(c.reloptions, ', '), 'm = 16, ef_construction = 64')
      INTO params
      FROM pg_class c
     WHERE c.oid = 'face_embeddings_hnsw_idx'::regclass;
    EXECUTE format(
        'CREATE INDEX face_embeddings_hnsw_idx_half ON face_embeddings '
        'USING hnsw ((embedding::halfvec(128)) halfvec_l2_ops) WITH (%s)', params);
    DROP INDEX face_embeddings_hnsw_idx;
    ALTER INDEX face_embeddings_hnsw_idx_half RENAME TO face_embeddings_hnsw_idx;
END
$$;
