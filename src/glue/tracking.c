/*
 * tracking.c: _track_event_changes, the statement-level trigger function that logs the contacts
 * an INSERT, UPDATE, DELETE or TRUNCATE touched into event_changes (tracking.sql).
 *
 * In C because it runs once per writing statement: a single-row INSERT paid more for the
 * PL/pgSQL call and its EXECUTE (parsed and planned every time) than for the row it logged.
 * Here the transition tables are read directly, the contacts deduplicated in memory, and written
 * straight into the change log's table (log_contacts; where that would skip something the table
 * has, or under Citus, by a prepared INSERT of them as an array, kept for the session).  Only an
 * UPDATE of engagement_events, which logs only the rows whose scored columns changed (paired by
 * id), runs a query over the transition tables, planned for that statement as before; its
 * contacts, and a TRUNCATE's (every scored contact), are logged the same way.  (With Citus loaded
 * the change log may be distributed, and Citus would run the SELECT of an INSERT ... SELECT into
 * it without the transition tables: the contacts always go in as an array.)
 *
 * The function runs as its owner (SECURITY DEFINER): every name in its queries is qualified,
 * and the one query with operators runs under search_path pg_catalog, pg_temp.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/tupdesc.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"
#include "utils/varlena.h"

#include "es_glue.h"

/* The session's prepared INSERT of contacts ($1 bigint[]) for a relation ($2), per schema. */
static SPIPlanPtr log_plan = NULL;
static Oid	log_plan_schema = InvalidOid;

/* A growing array of contact ids, in the trigger's memory context. */
typedef struct ContactList
{
	int64	   *ids;
	int			n;
	int			cap;
} ContactList;

static void
contact_list_add(ContactList *list, int64 id)
{
	/* Statements often write one contact's rows together: skip a repeat of the last at once. */
	if (list->n > 0 && list->ids[list->n - 1] == id)
		return;
	if (list->n == list->cap)
	{
		list->cap = list->cap == 0 ? 16 : list->cap * 2;
		list->ids = list->ids == NULL ? palloc(list->cap * sizeof(int64))
			: repalloc_huge(list->ids, (Size) list->cap * sizeof(int64));
	}
	list->ids[list->n++] = id;
}

static int
int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y;
}

static void
contact_list_distinct(ContactList *list)
{
	int			i,
				kept = 0;

	if (list->n < 2)
		return;
	qsort(list->ids, list->n, sizeof(int64), int64_cmp);
	for (i = 0; i < list->n; i++)
		if (kept == 0 || list->ids[kept - 1] != list->ids[i])
			list->ids[kept++] = list->ids[i];
	list->n = kept;
}

/* A relation's name as the messages of 1.4 gave it (regclass under search_path pg_catalog, pg_temp). */
static char *
relation_name(Relation rel)
{
	Oid			nsp = RelationGetNamespace(rel);

	if (isTempNamespace(nsp))
		return pstrdup(quote_identifier(RelationGetRelationName(rel)));
	return quote_qualified_identifier(get_namespace_name(nsp), RelationGetRelationName(rel));
}

/* A change-tracking trigger made by hand without the transition tables this function reads. */
es_noreturn static void
report_missing_transition_tables(const Trigger *trigger, Relation rel)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
			 errmsg("change-tracking trigger %s on %s must name its transition tables new_events and old_events",
					trigger->tgname, relation_name(rel)),
			 errhint("Let track_event_changes create the triggers.")));
}

/*
 * The contact column of a tracked relation: it must be one of its columns, of a built-in integer
 * type (its value is read as is, nothing of the caller's evaluated).  Returns its number.
 */
static AttrNumber
contact_column(Relation rel, const char *name, Oid *type)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), name) != 0)
			continue;
		if (att->atttypid != INT8OID && att->atttypid != INT4OID && att->atttypid != INT2OID)
			break;
		*type = att->atttypid;
		return att->attnum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("change tracking of %s needs a contact column %s of type bigint, integer or smallint",
					relation_name(rel), quote_identifier(name))));
	pg_unreachable();
}

/* Adds the non-NULL contacts of a transition table to list. */
static void
collect_contacts(Tuplestorestate *rows, Relation rel, AttrNumber attnum, Oid type, ContactList *list)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsMinimalTuple);
	int			reader;

	/* Other triggers of the statement may read the same store: a read pointer of our own. */
	reader = tuplestore_alloc_read_pointer(rows, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(rows, reader);
	tuplestore_rescan(rows);
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, attnum, &isnull);

		if (isnull)
			continue;			/* no contact: nothing to rescore (a full refresh counts it) */
		contact_list_add(list, type == INT8OID ? DatumGetInt64(d)
						 : type == INT4OID ? (int64) DatumGetInt32(d) : (int64) DatumGetInt16(d));
	}
	tuplestore_select_read_pointer(rows, 0);
	ExecDropSingleTupleTableSlot(slot);
}

/* Whether Citus is among shared_preload_libraries (a name, or a path ending in it). */
static bool
citus_preloaded(void)
{
	static int	preloaded = -1; /* (the setting only changes with a restart) */

	if (preloaded < 0)
	{
		const char *setting = GetConfigOption("shared_preload_libraries", true, false);
		char	   *names = pstrdup(setting != NULL ? setting : "");
		List	   *libraries = NIL;
		ListCell   *lc;

		preloaded = 0;
		if (!SplitDirectoriesString(names, ',', &libraries))
			preloaded = 1;		/* unreadable: assume it may be there */
		foreach(lc, libraries)
		{
			const char *library = (const char *) lfirst(lc);
			const char *base = strrchr(library, '/');

			base = base != NULL ? base + 1 : library;
			if (strcmp(base, "citus") == 0 || strcmp(base, "citus.so") == 0)
				preloaded = 1;
		}
	}
	return preloaded == 1;
}

/*
 * Whether the change log can take its rows straight into its table (a heap insert, cheaper than
 * an INSERT through SPI for the one row a single-row INSERT of events logs): only when an INSERT
 * would do nothing more than write them into its two columns, found by name (their places, after
 * any dropped column, go to contact_index and relation_index).  Anything more (an index, a rule, a
 * trigger, a check, row security, a partition's bound, a column beyond the two, a read-only
 * transaction, an executor permission hook such as sepgsql's or pgaudit's, or Citus, which could
 * have distributed the table) is the INSERT's to do.
 */
static bool
change_log_takes_rows(Relation log, int *contact_index, int *relation_index)
{
	TupleDesc	desc = RelationGetDescr(log);
	int			live = 0;
	int			i;

	/* (relhasindex and relhasrules stay set after the last index or rule is dropped, until VACUUM) */
	if (citus_preloaded() || XactReadOnly || ExecutorCheckPerms_hook != NULL ||
		log->rd_rel->relkind != RELKIND_RELATION || log->rd_rel->relispartition ||
		(log->rd_rel->relhasindex && RelationGetIndexList(log) != NIL) || log->rd_rules != NULL ||
		log->trigdesc != NULL || log->rd_rel->relrowsecurity ||
		(desc->constr != NULL && desc->constr->num_check > 0))
		return false;
	*contact_index = *relation_index = -1;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		live++;
		if (att->attidentity || att->attgenerated)
			return false;
		if (strcmp(NameStr(att->attname), "contact_id") == 0 && att->atttypid == INT8OID)
			*contact_index = i;
		else if (strcmp(NameStr(att->attname), "relation") == 0 && att->atttypid == REGCLASSOID)
			*relation_index = i;
	}
	return live == 2 && *contact_index >= 0 && *relation_index >= 0;
}

/* Logs the contacts of list (distinct) as changed in relid: into the table, or through the session's plan. */
static void
log_contacts(ContactList *list, Oid schema, Oid relid)
{
	Datum		values[2];
	Datum	   *elems;
	ArrayType  *ids;
	Oid			log_relid;
	Relation	log;
	int			contact_index,
				relation_index;
	int			i,
				rc;

	contact_list_distinct(list);
	if (list->n == 0)
		return;

	log_relid = get_relname_relid("event_changes", schema);
	if (!OidIsValid(log_relid))
		elog(ERROR, "the change log %s.event_changes is missing", get_namespace_name(schema));
	log = table_open(log_relid, RowExclusiveLock);
	/* (the function's owner may INSERT into the table; else the INSERT, which also accepts column
	 * privileges, lets it in or refuses with its own error) */
	if (change_log_takes_rows(log, &contact_index, &relation_index) &&
		pg_class_aclcheck(log_relid, GetUserId(), ACL_INSERT) == ACLCHECK_OK)
	{
		TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(log), table_slot_callbacks(log));

		for (i = 0; i < list->n; i++)
		{
			ExecClearTuple(slot);
			/* (a dropped column's place stays NULL, as the INSERT leaves it) */
			memset(slot->tts_isnull, true, slot->tts_tupleDescriptor->natts * sizeof(bool));
			slot->tts_values[contact_index] = Int64GetDatum(list->ids[i]);
			slot->tts_values[relation_index] = ObjectIdGetDatum(relid);
			slot->tts_isnull[contact_index] = slot->tts_isnull[relation_index] = false;
			ExecStoreVirtualTuple(slot);
			simple_table_tuple_insert(log, slot);
		}
		ExecDropSingleTupleTableSlot(slot);
		table_close(log, NoLock);
		CommandCounterIncrement();	/* (as the INSERT would: later commands see the rows) */
		return;
	}
	table_close(log, NoLock);

	if (log_plan == NULL || log_plan_schema != schema)
	{
		Oid			argtypes[2] = {INT8ARRAYOID, REGCLASSOID};
		char	   *query = psprintf("INSERT INTO %s.event_changes (contact_id, relation) "
									 "SELECT pg_catalog.unnest($1), $2",
									 quote_identifier(get_namespace_name(schema)));
		SPIPlanPtr	plan = SPI_prepare(query, 2, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		if (log_plan != NULL)
			SPI_freeplan(log_plan);
		log_plan = plan;
		log_plan_schema = schema;
	}
	elems = palloc(list->n * sizeof(Datum));
	for (i = 0; i < list->n; i++)
		elems[i] = Int64GetDatum(list->ids[i]);
	ids = construct_array(elems, list->n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	values[0] = PointerGetDatum(ids);
	values[1] = ObjectIdGetDatum(relid);
	rc = SPI_execute_plan(log_plan, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "logging changed contacts failed: %s", SPI_result_code_string(rc));
}

/*
 * Adds to list the contacts (bigint, never NULL) a query of one column returns, run under
 * search_path pg_catalog, pg_temp (its operators resolve there, whoever the caller is).
 */
static void
collect_query_contacts(const char *query, ContactList *list)
{
	int			nest = NewGUCNestLevel();
	int			rc;
	uint64		i;

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = SPI_execute(query, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading the changed contacts failed: %s", SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			contact_list_add(list, DatumGetInt64(d));
	}
	AtEOXact_GUC(true, nest);
}

PG_FUNCTION_INFO_V1(es_track_event_changes);
Datum
es_track_event_changes(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	Oid			relid;
	Oid			schema;
	Oid			events_relid;
	const char *contact;
	TriggerEvent event;
	ContactList list = {NULL, 0, 0};

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("_track_event_changes is a statement-level AFTER trigger function")));
	trigger = trigdata->tg_trigger;
	rel = trigdata->tg_relation;
	relid = RelationGetRelid(rel);
	event = trigdata->tg_event;
	/* the function lives in the extension's schema, beside the change log */
	schema = get_func_namespace(fcinfo->flinfo->fn_oid);
	events_relid = get_relname_relid("engagement_events", schema);
	contact = trigger->tgnargs > 0 ? trigger->tgargs[0] : "contact_id";

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (TRIGGER_FIRED_BY_TRUNCATE(event))
	{
		/* every scored contact may have lost its events */
		collect_query_contacts(psprintf("SELECT DISTINCT s.contact_id FROM %s.engagement_scores s",
										quote_identifier(get_namespace_name(schema))), &list);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(event) && relid == events_relid)
	{
		/*
		 * Only updates of what the model reads make a contact's score stale: old and new rows
		 * paired by id.  Planned for this statement's transition tables (a plan kept from a
		 * one-row UPDATE would join thousands of rows by nested loops).
		 */
		const char *query;

		if (trigger->tgoldtable == NULL || trigger->tgnewtable == NULL ||
			strcmp(trigger->tgoldtable, "old_events") != 0 || strcmp(trigger->tgnewtable, "new_events") != 0)
			report_missing_transition_tables(trigger, rel);
		if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
			elog(ERROR, "SPI_register_trigger_data failed");
		query = "SELECT c "
			"  FROM (SELECT o.contact_id, n.contact_id "
			"          FROM old_events o JOIN new_events n USING (id) "
			"         WHERE (o.contact_id, o.event_type, o.occurred_at, o.conversion_value) "
			"               IS DISTINCT FROM (n.contact_id, n.event_type, n.occurred_at, n.conversion_value)) ch(a, b), "
			"       LATERAL (VALUES (ch.a), (ch.b)) v(c) "
			" GROUP BY c";
		collect_query_contacts(query, &list);
	}
	else
	{
		/*
		 * INSERT and DELETE: the contacts of the new or old rows.  An UPDATE of another relation
		 * (its rows have no id to pair old and new versions by): every contact it touched.
		 */
		Oid			type = InvalidOid;
		AttrNumber	attnum = contact_column(rel, contact, &type);
		bool		reads_new = TRIGGER_FIRED_BY_INSERT(event) || TRIGGER_FIRED_BY_UPDATE(event);
		bool		reads_old = TRIGGER_FIRED_BY_DELETE(event) || TRIGGER_FIRED_BY_UPDATE(event);

		if ((reads_new && trigdata->tg_newtable == NULL) || (reads_old && trigdata->tg_oldtable == NULL))
			report_missing_transition_tables(trigger, rel);
		if (reads_new)
			collect_contacts(trigdata->tg_newtable, rel, attnum, type, &list);
		if (reads_old)
			collect_contacts(trigdata->tg_oldtable, rel, attnum, type, &list);
	}
	log_contacts(&list, schema, relid);

	SPI_finish();
	return PointerGetDatum(NULL);
}
