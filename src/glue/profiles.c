/*
 * profiles.c: the scoring profiles of score_events and explain_events, and event types.
 *
 * A profile comes by name (a row of engagement.scoring_profiles, read by SPI) or as a document
 * (to_jsonb of such a row, its keys read with the jsonb API).  Either way the transition function
 * resolves it once per query into an entry of the cache in its fn_extra, and the state points at
 * the entry.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "nodes/primnodes.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
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
	/* a profile argument the same for every row (es_row_profile): its entry, once resolved */
	bool		profile_arg_known;
	bool		profile_arg_constant;
	Oid			profile_argtype;
	const NamedProfile *constant_profile;
	/* engagement.event_type's OID per kernel event type, for the transition function */
	Oid			enum_type;
	Oid			enum_oids[ES_EVENT_TYPES];
	/* a function returning a composite: its result's descriptor, blessed (es_result_tupdesc) */
	TupleDesc	result_desc;
	/* predict's and customer_lifetime_value's memo (es_query_forecast_memo), and their calls */
	es_forecast_memo *forecast_memo;
	int64		forecast_calls;
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

/* Sets out's name to name (len bytes, or NULL when there is none): 1 to NAMEDATALEN - 1 bytes. */
static void
es_set_profile_name(NamedProfile *out, const char *name, int len, const char *display)
{
	if (name == NULL || len <= 0 || len >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scoring profile %s needs a name of 1 to %d bytes", display, NAMEDATALEN - 1)));
	memcpy(out->name, name, len);
	out->name[len] = '\0';
}

/* The kernel's checks of a profile read (the table's constraints, for a stored one). */
static void
es_check_profile(const NamedProfile *p, const char *display)
{
	char		err[ES_ERRLEN];

	if (es_validate_profile(&p->values, err, sizeof err) != ES_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scoring profile %s is invalid: %s", display, err)));
}

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
		text	   *name = isnull ? NULL : DatumGetTextPP(d);

		es_set_profile_name(out, name != NULL ? VARDATA_ANY(name) : NULL, name != NULL ? VARSIZE_ANY_EXHDR(name) : 0,
							display);
	}
	SPI_finish();

	/* The table's constraints make this impossible for stored profiles; the kernel checks anyway. */
	es_check_profile(out, display);
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

/* What an installation not yet updated to this library's extension version gets (55000). */
es_noreturn static void
es_needs_update(const char *version)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("this engagement_scoring library needs the extension update to %s", version),
			 errhint("Run ALTER EXTENSION engagement_scoring UPDATE in this database.")));
}

/*
 * Between an upgrade of the library and ALTER EXTENSION ... UPDATE, the profile table lacks the
 * newest parameters (gg_v from 1.4; the parameters of model version 3, new_contact_days among
 * them, from 1.6): say what to do rather than "column does not exist".  Syscache lookups only,
 * once per profile and query.
 */
static void
es_check_profile_table_is_current(void)
{
	Oid			nsp = get_namespace_oid("engagement", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("scoring_profiles", nsp) : InvalidOid;

	if (!OidIsValid(rel))
		return;
	if (get_attnum(rel, "gg_v") == InvalidAttrNumber)
		es_needs_update("1.4");
	if (get_attnum(rel, "new_contact_days") == InvalidAttrNumber)
		es_needs_update("1.6");
}

/*
 * The relation the profiles are read from.  On Citus (citus_distribute) scoring_profiles is a
 * reference table, whose placement on every node, the coordinator included, holds the
 * coordinator's rows; a query running on a shard may not query the Citus table itself ("cannot
 * execute a distributed query from a query on a shard"), so the placement is read directly.  A
 * syscache lookup without Citus; with it one catalog query, once per profile and query.
 */
static const char *
es_profiles_relation(void)
{
	Oid			nsp = get_namespace_oid("engagement", true);
	Oid			profiles = OidIsValid(nsp) ? get_relname_relid("scoring_profiles", nsp) : InvalidOid;
	Oid			argtype = OIDOID;
	Datum		arg = ObjectIdGetDatum(profiles);
	char		placement[NAMEDATALEN] = "";

	if (!OidIsValid(profiles) || !OidIsValid(get_relname_relid("pg_dist_shard", PG_CATALOG_NAMESPACE)))
		return "engagement.scoring_profiles";
	SPI_connect();
	if (SPI_execute_with_args("SELECT shardid FROM pg_catalog.pg_dist_shard WHERE logicalrelid OPERATOR(pg_catalog.=) $1",
							  1, &argtype, &arg, NULL, true, 2) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		shardid = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			snprintf(placement, sizeof(placement), "scoring_profiles_" INT64_FORMAT, DatumGetInt64(shardid));
	}
	SPI_finish();
	return placement[0] != '\0' && OidIsValid(get_relname_relid(placement, nsp))
		? psprintf("engagement.%s", placement) : "engagement.scoring_profiles";
}

/* The profile called name (len bytes, not NUL-terminated), read from engagement.scoring_profiles
 * (es_profiles_relation) on its first use in the query. */
static const NamedProfile *
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
	if (len < NAMEDATALEN)		/* (a longer name is no profile's) */
		es_check_profile_table_is_current();
	/* Fully qualified, operator included: SPI resolves names with the caller's search_path. */
	if (len >= NAMEDATALEN ||
		!es_read_profile(psprintf("%s WHERE name OPERATOR(pg_catalog.=) $1", es_profiles_relation()), TEXTOID,
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
 * The profile document's names, in es_profile's field order (profile_params.h): its keys read.
 * Other keys (a profile row's events relation, say) are ignored.
 */
#define ES_PROFILE_COLUMN_NAME(column, member, default_value, rule) #column,
static const char *const document_keys[] = {ES_PROFILE_PARAMS(ES_PROFILE_COLUMN_NAME)};
#undef ES_PROFILE_COLUMN_NAME
StaticAssertDecl(lengthof(document_keys) == ES_PROFILE_VALUES, "a document key per profile parameter");

/* A value of a document that is not a number: 22023, like every other flaw of a document. */
static void
es_document_not_a_number(const char *key, const char *value)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("scoring profile document is invalid: %s must be a number, not %s", key, value)));
}

/*
 * The value of key in a profile document as jsonb_to_record would read it into a float8 column
 * (a number, or a string float8in reads), NaN when it is missing or null (the kernel's validation
 * then names it).  Numbers beyond the range of a double become infinities, which the validation
 * also rejects: every flaw of a document is 22023.
 */
static double
es_document_number(Jsonb *doc, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&doc->root, key, strlen(key), NULL);

	if (v == NULL || v->type == jbvNull)
		return get_float8_nan();
	if (v->type == jbvNumeric)
		return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, NumericGetDatum(v->val.numeric)));
	if (v->type == jbvString)
	{
		char	   *s = pnstrdup(v->val.string.val, v->val.string.len);
		bool		error;
		double		d = es_float8in_soft(s, NULL, "double precision", s, &error);

		if (error)
			es_document_not_a_number(key, quote_literal_cstr(s));
		pfree(s);
		return d;
	}
	if (v->type == jbvBool)
		es_document_not_a_number(key, v->val.boolean ? "true" : "false");
	es_document_not_a_number(key, "an array or object");
	return 0;					/* keep the compiler quiet */
}

/* The name of a profile document: a string (or a number or boolean, as its text). */
static void
es_document_name(Jsonb *doc, NamedProfile *out)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&doc->root, "name", strlen("name"), NULL);

	if (v != NULL && v->type == jbvString)
		es_set_profile_name(out, v->val.string.val, v->val.string.len, "document");
	else if (v != NULL && v->type == jbvNumeric)
	{
		char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));

		es_set_profile_name(out, s, strlen(s), "document");
	}
	else if (v != NULL && v->type == jbvBool)
		es_set_profile_name(out, v->val.boolean ? "true" : "false", v->val.boolean ? 4 : 5, "document");
	else
		es_set_profile_name(out, NULL, 0, "document");
}

/*
 * A profile given as a document (to_jsonb of a scoring_profiles row): every parameter travels
 * with the query, so a server that scores it (a postgres_fdw shard) needs no copy of the
 * profiles table.
 */
static const NamedProfile *
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
	/* The keys are read with the jsonb API: no SPI, no type lookup, no error but 22023. */
	memset(&found, 0, sizeof found);
	for (i = 0; i < ES_PROFILE_VALUES; i++)
		((double *) &found.values)[i] = es_document_number(doc, document_keys[i]);
	es_document_name(doc, &found);
	es_check_profile(&found, "document");
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

/* "delivered, opened, ..., opted_in and bounced": the event types the model knows. */
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
			tup = SearchSysCache2(ENUMTYPOIDNAME, ObjectIdGetDatum(enum_type),
								  CStringGetDatum(es_event_type_name(t)));
			/* opted_in is new in 1.6: an installation not yet updated lacks it (and the profiles'
			 * columns of 1.6) */
			if (!HeapTupleIsValid(tup) && t == ES_OPTED_IN)
				es_check_profile_table_is_current();
			/* a label renamed (ALTER TYPE ... RENAME VALUE) */
			if (!HeapTupleIsValid(tup))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("type %s has no label \"%s\"", format_type_be(enum_type), es_event_type_name(t)),
						 errdetail("The scoring model needs the event types %s.", es_known_event_types())));
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
			 errdetail("The model knows the event types %s.", es_known_event_types()),
			 errhint("Leave events of other types out of the rows scored, or map them to one of these.")));
	return -1;					/* keep the compiler quiet */
}

/* The descriptor of the composite the function returns, resolved and blessed at its first call
 * in the query (a function that also reads profiles keeps both in fn_extra). */
TupleDesc
es_result_tupdesc(FunctionCallInfo fcinfo)
{
	ProfileCache *cache = es_cache(fcinfo);

	if (cache->result_desc == NULL)
	{
		TupleDesc	desc;
		MemoryContext old;

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "function returning a composite called in a context that cannot accept one");
		old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
		cache->result_desc = BlessTupleDesc(CreateTupleDescCopy(desc));
		MemoryContextSwitchTo(old);
	}
	return cache->result_desc;
}

/* The query's forecast memo (es_forecast_memo), from the function's second call on: a query that
 * predicts for one contact does not allocate and clear its 256 kB. */
es_forecast_memo *
es_query_forecast_memo(FunctionCallInfo fcinfo)
{
	ProfileCache *cache = es_cache(fcinfo);

	if (cache->forecast_memo == NULL && cache->forecast_calls++ > 0)
		cache->forecast_memo = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(es_forecast_memo));
	return cache->forecast_memo;
}

/* The cache's entry for p (another process's profile, deserialized): states then point at it. */
const NamedProfile *
es_interned_profile(FunctionCallInfo fcinfo, const NamedProfile *p)
{
	return es_intern_profile(fcinfo, es_cache(fcinfo), p);
}

/* Whether argument argno is the same for every row: for an aggregate's transition function (1 is
 * the aggregate's first argument), a constant or a query parameter of its Aggref (a window
 * aggregate's arguments are not known); for a plain function (predict's and lifetime value's), a
 * constant or an external parameter of its call (get_fn_expr_arg_stable). */
static bool
es_arg_same_for_every_row(FunctionCallInfo fcinfo, int argno)
{
	Aggref	   *aggref = AggGetAggref(fcinfo);
	Node	   *arg;

	if (aggref == NULL)			/* a plain function (predict's): argument argno of its call */
		return get_fn_expr_arg_stable(fcinfo->flinfo, argno);
	if (list_length(aggref->args) < argno)
		return false;
	arg = (Node *) ((TargetEntry *) list_nth(aggref->args, argno - 1))->expr;
	return IsA(arg, Const) || (IsA(arg, Param) && ((Param *) arg)->paramkind == PARAM_EXTERN);
}

/*
 * The profile of a score_events row: transition argument argno, a name (text) or a document
 * (jsonb), or "default" when the aggregate has no such argument.  An argument that is the same
 * for every row (a constant, or a parameter as in the refresh's statements) is resolved at the
 * first row only; others by name or document, through the cache, at every row.
 */
const NamedProfile *
es_row_profile(FunctionCallInfo fcinfo, int argno)
{
	ProfileCache *cache = es_cache(fcinfo);
	const NamedProfile *profile;

	if (cache->constant_profile != NULL)
		return cache->constant_profile;
	if (!cache->profile_arg_known)
	{
		if (PG_NARGS() > argno)
		{
			cache->profile_argtype = get_fn_expr_argtype(fcinfo->flinfo, argno);
			cache->profile_arg_constant = es_arg_same_for_every_row(fcinfo, argno);
		}
		else
			cache->profile_arg_constant = true;
		cache->profile_arg_known = true;
	}
	if (PG_NARGS() <= argno)
		profile = es_profile_by_name(fcinfo, "default", strlen("default"));
	else if (cache->profile_argtype == JSONBOID)
		profile = es_profile_from_document(fcinfo, PG_GETARG_JSONB_P(argno));
	else
	{
		text	   *name = PG_GETARG_TEXT_PP(argno);

		profile = es_profile_by_name(fcinfo, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));
	}
	if (cache->profile_arg_constant)
		cache->constant_profile = profile;
	return profile;
}
