"""Support for tests and benchmarks of migrations: "a new migration" without touching the
app's real migrations folder.

:func:`write_extra_migration_package` writes, in a directory of your choice, a package
mirroring an app's migrations (one shim module per real migration, importing it) plus one
new migration that depends on the app's current leaf. Put the directory on ``sys.path``
and ``MIGRATION_MODULES = {app_label: package}``: Django then sees the real history plus
the new migration, whatever migrations other people have added meanwhile.
"""

from __future__ import annotations

import pkgutil
import sys
from importlib import import_module
from pathlib import Path

KINDS = {
    # A nullable column: instant DDL, the classic expand step.
    "add_field": """
        migrations.AddField(
            model_name={model!r},
            name={field!r},
            field=models.TextField(null=True, blank=True),
        ),
""",
    # A new table with a foreign key and an index: DDL plus deferred SQL, new content type
    # and permissions (post_migrate).
    "create_model": """
        migrations.CreateModel(
            name={new_model!r},
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("label", models.CharField(max_length=50, db_index=True)),
                ("booking", models.ForeignKey(null=True, on_delete=models.deletion.CASCADE, to="{app_label}.{model_cap}")),
            ],
        ),
""",
    # A column, then a table: two operations in one migration (atomicity tests).
    "create_model_after_field": """
        migrations.AddField(
            model_name={model!r},
            name={field!r},
            field=models.TextField(null=True, blank=True),
        ),
        migrations.CreateModel(
            name={new_model!r},
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("label", models.CharField(max_length=50)),
            ],
        ),
""",
    # Python code: cannot be reduced to SQL, so migrate_communes must use Django's path.
    "run_python": """
        migrations.AddField(
            model_name={model!r},
            name={field!r},
            field=models.TextField(null=True, blank=True),
        ),
        migrations.RunPython(fail_in_some_schemas, migrations.RunPython.noop),
""",
}


def write_extra_migration_package(directory: Path | str, *, app_label: str = "booking",
                                  package: str = "ops_extra_migrations", name: str = "9001_ops_extra",
                                  kind: str = "add_field", model: str = "booking", field: str = "ops_note",
                                  new_model: str = "OpsProbe", fail_schemas: tuple[str, ...] = ()) -> str:
    """Write ``<directory>/<package>/`` and return ``package`` (for MIGRATION_MODULES).

    ``kind="run_python"`` adds a column then runs Python that raises in ``fail_schemas``
    (to show a failure after a first operation leaves nothing behind)."""
    from django.apps import apps
    from django.db.migrations.loader import MigrationLoader

    app_config = apps.get_app_config(app_label)
    real_package = f"{app_config.name}.migrations"
    real = import_module(real_package)
    target = Path(directory) / package
    target.mkdir(parents=True, exist_ok=True)
    (target / "__init__.py").write_text("")
    for module in pkgutil.iter_modules(real.__path__):
        if module.ispkg:
            continue
        (target / f"{module.name}.py").write_text(
            "from importlib import import_module\n\n"
            f"Migration = import_module({real_package + '.' + module.name!r}).Migration\n"
        )
    leaves = [key for key in MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes()
              if key[0] == app_label]
    operations = KINDS[kind].format(model=model, field=field, new_model=new_model, app_label=app_label,
                                    model_cap=model.capitalize())
    (target / f"{name}.py").write_text(
        "from django.db import migrations, models\n\n"
        f"FAIL_SCHEMAS = {tuple(fail_schemas)!r}\n\n\n"
        "def fail_in_some_schemas(apps, schema_editor):\n"
        "    if schema_editor.connection.schema_name in FAIL_SCHEMAS:\n"
        "        raise RuntimeError('refused in ' + schema_editor.connection.schema_name)\n\n\n"
        "class Migration(migrations.Migration):\n"
        f"    dependencies = {leaves!r}\n\n"
        f"    operations = [{operations}    ]\n"
    )
    sys.modules.pop(package, None)
    return package
