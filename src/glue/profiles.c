/*
 * profiles.c: the scoring profiles of score_events and explain_events, and event types.
 *
 * A profile comes by name (a row of engagement.scoring_profiles, read by SPI) or as a document
 * (to_jsonb of such a row).  Either way the transition function resolves it once per query into
 * an entry of the cache in its fn_extra, and the state copies the entry's values.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "es_glue.h"
#include "profile_params.h"

#define CACHED_DOCUMENTS 8

/* In a transition function's fn_extra: what it resolved in this query. */
typedef struct ProfileCache
{
	List	   *interned;		/* NamedProfile *, every entry of this query */
	/* score_events(..., profile text): the entries read by name, and the previous row's */
	List	   *by_name;
	const NamedProfile *last_by_name;
	/*
	 * score_events(..., profile jsonb): the last documents seen (a few, so that rows alternating
	 * between profiles do not reread them) and their entries.
	 */
	struct
	{
		Jsonb	   *doc;
		const NamedProfile *profile;
	}			documents[CACHED_DOCUMENTS];
	int			next_document;
	/* engagement.event_type's OID per kernel event type, for the transition function */
	Oid			enum_type;
	Oid			enum_oids[ES_EVENT_TYPES];
} ProfileCache;

static ProfileCache *
es_cache(FunctionCallInfo fcinfo)
{
	if (fcinfo->flinfo->fn_extra == NULL)
		fcinfo->flinfo->fn_extra = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ProfileCache));
	return (ProfileCache *) fcinfo->flinfo->fn_extra;
}

/* The model parameters in es_profile's field order (profile_params.h), then the name. */
static const char *const profile_columns = ES_PROFILE_COLUMNS "name";

/*
 * Reads one profile row, "SELECT <profile_columns> FROM <from>" with $1 = arg, into *out
 * (zeroed first).  False when there is no row.  A missing value becomes NaN, which the kernel's
 * validation rejects by name.
 */
static bool
es_read_profile(const char *from, Oid argtype, Datum arg, const char *display, NamedProfile *out)
{
	StringInfoData query;
	double	   *v = (double *) &out->values;
	HeapTuple	row;
	TupleDesc	desc;
	bool		isnull;
	int			ret;
	int			i;
	char		err[ES_ERRLEN];

	memset(out, 0, sizeof(NamedProfile));
	initStringInfo(&query);
	appendStringInfo(&query, "SELECT %s FROM %s", profile_columns, from);
	SPI_connect();
	ret = SPI_execute_with_args(query.data, 1, &argtype, &arg, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading scoring profile %s failed: %s", display, SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		SPI_finish();
		return false;
	}
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	for (i = 0; i < ES_PROFILE_VALUES; i++)
	{
		Datum		d = SPI_getbinval(row, desc, i + 1, &isnull);

		v[i] = isnull ? get_float8_nan() : DatumGetFloat8(d);
	}
	{
		Datum		d = SPI_getbinval(row, desc, ES_PROFILE_VALUES + 1, &isnull);

		if (isnull || VARSIZE_ANY_EXHDR(DatumGetPointer(d)) == 0 ||
			VARSIZE_ANY_EXHDR(DatumGetPointer(d)) >= NAMEDATALEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("scoring profile %s needs a name of 1 to %d bytes", display, NAMEDATALEN - 1)));
		text_to_cstring_buffer((text *) DatumGetPointer(d), out->name, NAMEDATALEN);
	}
	SPI_finish();

	/* The table's constraints make this impossible for stored profiles; the kernel checks anyway. */
	if (es_validate_profile(&out->values, err, sizeof err) != ES_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scoring profile %s is invalid: %s", display, err)));
	return true;
}

/* The cache's entry for p, made on first sight. */
static const NamedProfile *
es_intern_profile(FunctionCallInfo fcinfo, ProfileCache *cache, const NamedProfile *p)
{
	ListCell   *lc;
	NamedProfile *copy;
	MemoryContext old;

	foreach(lc, cache->interned)
		if (memcmp(lfirst(lc), p, sizeof(NamedProfile)) == 0)
			return (const NamedProfile *) lfirst(lc);
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	copy = palloc(sizeof(NamedProfile));
	*copy = *p;
	cache->interned = lappend(cache->interned, copy);
	MemoryContextSwitchTo(old);
	return copy;
}

/* Whether entry p is named name (len bytes, not NUL-terminated): a byte comparison. */
static inline bool
es_profile_named(const NamedProfile *p, const char *name, int len)
{
	return len < NAMEDATALEN && p->name[len] == '\0' && memcmp(p->name, name, len) == 0;
}

/* The profile called name (len bytes, not NUL-terminated), read from engagement.scoring_profiles
 * on its first use in the query. */
const NamedProfile *
es_profile_by_name(FunctionCallInfo fcinfo, const char *name, int len)
{
	ProfileCache *cache = es_cache(fcinfo);
	NamedProfile found;
	const NamedProfile *entry;
	ListCell   *lc;
	char	   *cname;
	MemoryContext old;

	/* Hot path: the previous row's profile. */
	if (cache->last_by_name != NULL && es_profile_named(cache->last_by_name, name, len))
		return cache->last_by_name;
	foreach(lc, cache->by_name)
		if (es_profile_named(lfirst(lc), name, len))
			return cache->last_by_name = lfirst(lc);

	cname = pnstrdup(name, len);
	if (len >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("scoring profile \"%s\" does not exist", cname)));
	/* Fully qualified, operator included: SPI resolves names with the caller's search_path. */
	if (!es_read_profile("engagement.scoring_profiles WHERE name OPERATOR(pg_catalog.=) $1", TEXTOID,
						 CStringGetTextDatum(cname), psprintf("\"%s\"", cname), &found))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("scoring profile \"%s\" does not exist", cname),
				 errhint("The profiles are the rows of engagement.scoring_profiles.")));
	entry = es_intern_profile(fcinfo, cache, &found);
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	cache->by_name = lappend(cache->by_name, (void *) entry);
	MemoryContextSwitchTo(old);
	return cache->last_by_name = entry;
}

/*
 * jsonb_to_record($1) AS r(<profile_columns with their types>): only the model's keys are read,
 * so the other columns of a profile row (its events relation, say) need not exist where it is
 * read.
 */
static const char *
es_document_source(void)
{
	static char *source = NULL;

	if (source == NULL)
	{
		StringInfoData buf;
		char	   *columns = pstrdup(profile_columns);
		char	   *save = NULL;
		char	   *column;
		int			i = 0;

		initStringInfo(&buf);
		appendStringInfoString(&buf, "pg_catalog.jsonb_to_record($1) AS r(");
		for (column = strtok_r(columns, ", ", &save); column != NULL; column = strtok_r(NULL, ", ", &save), i++)
			appendStringInfo(&buf, "%s%s %s", i > 0 ? ", " : "", column,
							 i < ES_PROFILE_VALUES ? "pg_catalog.float8" : "pg_catalog.text");
		appendStringInfoChar(&buf, ')');
		source = MemoryContextStrdup(TopMemoryContext, buf.data);
	}
	return source;
}

/*
 * A profile given as a document (to_jsonb of a scoring_profiles row): every parameter travels
 * with the query, so a server that scores it (a postgres_fdw shard) needs no copy of the
 * profiles table.
 */
const NamedProfile *
es_profile_from_document(FunctionCallInfo fcinfo, Jsonb *doc)
{
	ProfileCache *cache = es_cache(fcinfo);
	NamedProfile found;
	int			i;
	int			slot;

	for (i = 0; i < CACHED_DOCUMENTS; i++)
		if (cache->documents[i].doc != NULL && VARSIZE(doc) == VARSIZE(cache->documents[i].doc) &&
			memcmp(doc, cache->documents[i].doc, VARSIZE(doc)) == 0)
			return cache->documents[i].profile;

	if (!JB_ROOT_IS_OBJECT(doc) || JB_ROOT_IS_SCALAR(doc))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a scoring profile document must be a JSON object (to_jsonb of an engagement.scoring_profiles row)")));
	(void) es_read_profile(es_document_source(), JSONBOID, PointerGetDatum(doc), "document", &found);
	slot = cache->next_document;
	cache->next_document = (slot + 1) % CACHED_DOCUMENTS;
	if (cache->documents[slot].doc != NULL)
		pfree(cache->documents[slot].doc);
	cache->documents[slot].doc = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, VARSIZE(doc));
	memcpy(cache->documents[slot].doc, doc, VARSIZE(doc));
	cache->documents[slot].profile = es_intern_profile(fcinfo, cache, &found);
	return cache->documents[slot].profile;
}

/* The built-in default profile, named "default" (btyd_summary reads no table). */
const NamedProfile *
es_builtin_default_profile(void)
{
	static NamedProfile builtin;	/* lives as long as the process, like a cache entry */

	if (builtin.name[0] == '\0')
	{
		builtin.values = es_default_profile();
		strlcpy(builtin.name, "default", NAMEDATALEN);
	}
	return &builtin;
}

/* "delivered, opened, ... and bounced": the event types the model knows. */
static char *
es_known_event_types(void)
{
	StringInfoData buf;
	int			t;

	initStringInfo(&buf);
	for (t = 0; t < ES_EVENT_TYPES; t++)
		appendStringInfo(&buf, "%s%s", t == 0 ? "" : t == ES_EVENT_TYPES - 1 ? " and " : ", ",
						 es_event_type_name(t));
	return buf.data;
}

/* Maps engagement.event_type's OIDs to kernel event types (once per query). */
int
es_event_type_of(FunctionCallInfo fcinfo, Oid value)
{
	ProfileCache *cache = es_cache(fcinfo);
	int			t;
	HeapTuple	tup;
	char	   *label;

	if (!OidIsValid(cache->enum_type))
	{
		Oid			enum_type = get_fn_expr_argtype(fcinfo->flinfo, 1);

		if (!OidIsValid(enum_type))
			elog(ERROR, "could not determine the event type's data type");
		for (t = 0; t < ES_EVENT_TYPES; t++)
		{
			HeapTuple	tup = SearchSysCache2(ENUMTYPOIDNAME, ObjectIdGetDatum(enum_type),
											  CStringGetDatum(es_event_type_name(t)));

			/* a label renamed (ALTER TYPE ... RENAME VALUE) */
			if (!HeapTupleIsValid(tup))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("type %s has no label \"%s\"", format_type_be(enum_type), es_event_type_name(t)),
						 errdetail("The scoring model needs the seven event types %s.", es_known_event_types())));
			cache->enum_oids[t] = ((Form_pg_enum) GETSTRUCT(tup))->oid;
			ReleaseSysCache(tup);
		}
		cache->enum_type = enum_type;
	}
	for (t = 0; t < ES_EVENT_TYPES; t++)
		if (cache->enum_oids[t] == value)
			return t;

	/* A label added to the enum (ALTER TYPE ... ADD VALUE): the model has no place for it. */
	tup = SearchSysCache1(ENUMOID, ObjectIdGetDatum(value));
	if (HeapTupleIsValid(tup))
	{
		label = psprintf("\"%s\"", NameStr(((Form_pg_enum) GETSTRUCT(tup))->enumlabel));
		ReleaseSysCache(tup);
	}
	else
		label = psprintf("with OID %u", value);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("the scoring model does not know event type %s", label),
			 errdetail("The model knows the seven event types %s.", es_known_event_types()),
			 errhint("Leave events of other types out of the rows scored, or map them to one of these.")));
	return -1;					/* keep the compiler quiet */
}
