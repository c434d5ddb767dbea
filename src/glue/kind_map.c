/*
 * kind_map.c: _map_kind, a CRM's kind mapped to an event type through its source's kind map.
 *
 * The map comes as two constant arrays of the query (the kinds and their event types), however
 * many kinds it has; the first call of a query sorts a copy of it in fn_mcxt, and every row is
 * then one binary search, in bytes (a kind matches exactly, as the map's key does).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "es_glue.h"

typedef struct KindEntry
{
	const char *kind;
	int			len;
	Datum		event_type;		/* an enum value's OID */
} KindEntry;

typedef struct KindMap
{
	MemoryContext cxt;			/* holds the map, the arrays' copies and the map's entries */
	Datum		kinds_seen;		/* the arrays the map was built from: a constant's pointer */
	Datum		types_seen;
	int			n;
	KindEntry  *entries;		/* sorted by kind_cmp */
} KindMap;

static int
kind_cmp(const char *a, int alen, const char *b, int blen)
{
	int			c = memcmp(a, b, Min(alen, blen));

	return c != 0 ? c : (alen > blen) - (alen < blen);
}

static int
entry_cmp(const void *x, const void *y)
{
	const KindEntry *a = x;
	const KindEntry *b = y;

	return kind_cmp(a->kind, a->len, b->kind, b->len);
}

/* The map of the two arrays, sorted, in a context of its own under fn_mcxt; a kind listed twice or
 * a NULL is 22023. */
static KindMap *
build_map(FunctionCallInfo fcinfo, Datum kinds_datum, Datum types_datum)
{
	MemoryContext cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt, "kind map", ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	ArrayType  *kinds = DatumGetArrayTypePCopy(kinds_datum);
	ArrayType  *types = DatumGetArrayTypePCopy(types_datum);
	KindMap    *map = palloc0(sizeof(KindMap));
	Datum	   *kind_values;
	bool	   *kind_nulls;
	Datum	   *type_values;
	bool	   *type_nulls;
	int			ntypes;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			i;

	deconstruct_array(kinds, TEXTOID, -1, false, TYPALIGN_INT, &kind_values, &kind_nulls, &map->n);
	get_typlenbyvalalign(ARR_ELEMTYPE(types), &typlen, &typbyval, &typalign);
	deconstruct_array(types, ARR_ELEMTYPE(types), typlen, typbyval, typalign, &type_values, &type_nulls, &ntypes);
	if (ntypes != map->n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a kind map needs as many event types as kinds, not %d for %d", ntypes, map->n)));
	map->entries = palloc(sizeof(KindEntry) * Max(map->n, 1));
	for (i = 0; i < map->n; i++)
	{
		text	   *kind;

		if (kind_nulls[i] || type_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a kind map has no NULL kind or event type")));
		kind = DatumGetTextPP(kind_values[i]);
		map->entries[i].kind = VARDATA_ANY(kind);
		map->entries[i].len = VARSIZE_ANY_EXHDR(kind);
		map->entries[i].event_type = type_values[i];
	}
	qsort(map->entries, map->n, sizeof(KindEntry), entry_cmp);
	for (i = 1; i < map->n; i++)
		if (entry_cmp(&map->entries[i - 1], &map->entries[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a kind map lists kind \"%.*s\" twice", map->entries[i].len, map->entries[i].kind)));
	map->cxt = cxt;
	map->kinds_seen = kinds_datum;
	map->types_seen = types_datum;
	MemoryContextSwitchTo(old);
	return map;
}

/* _map_kind(kind text, kinds text[], types event_type[]): the type of kind, NULL when unmapped */
PG_FUNCTION_INFO_V1(es_map_kind);
Datum
es_map_kind(PG_FUNCTION_ARGS)
{
	text	   *kind = PG_GETARG_TEXT_PP(0);
	KindMap    *map = fcinfo->flinfo->fn_extra;
	const char *key = VARDATA_ANY(kind);
	int			len = VARSIZE_ANY_EXHDR(kind);
	int			lo = 0;
	int			hi;

	/* (arrays that are not the query's constants, so not the same from row to row: built again) */
	if (map == NULL || map->kinds_seen != PG_GETARG_DATUM(1) || map->types_seen != PG_GETARG_DATUM(2))
	{
		if (map != NULL)
			MemoryContextDelete(map->cxt);
		map = build_map(fcinfo, PG_GETARG_DATUM(1), PG_GETARG_DATUM(2));
		fcinfo->flinfo->fn_extra = map;
	}
	hi = map->n;
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			c = kind_cmp(key, len, map->entries[mid].kind, map->entries[mid].len);

		if (c == 0)
			PG_RETURN_DATUM(map->entries[mid].event_type);
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	PG_RETURN_NULL();
}
