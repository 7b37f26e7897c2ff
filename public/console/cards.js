// Tables of the console pages. A `cards` table becomes one card per row on a phone (console.css `table.cards`):
// each cell carries its column's name as `data-label`, which the narrow layout shows above the cell's value.
import { h } from "../app/dom.js";

/**
 * A table with a caption for screen readers and one header row; `rows` are its body rows, or a tbody the caller
 * fills later (then calls `labelCells`). `cls`: the table's class (`cards`, `stack`, ...), none when left out.
 */
export function dataTable(caption, columns, rows, cls) {
  const table = h(
    "table",
    { class: cls },
    h("caption", { class: "sr", text: caption }),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        columns.map((t) => h("th", { scope: "col", text: t })),
      ),
    ),
    rows?.tagName === "TBODY" ? rows : h("tbody", {}, rows),
  );
  if (table.classList.contains("cards")) labelCells(table);
  return table;
}

/** A table wider than a narrow screen, in a region of its own that the keyboard can focus and scroll. */
export const tableRegion = (label, table) =>
  h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": label }, table);

/** Labels each cell of the `cards` tables under `root` with its column (a row of another shape gets none). */
export function labelCells(root) {
  const tables = root.matches("table.cards") ? [root] : root.querySelectorAll("table.cards");
  for (const table of tables) {
    const names = [...(table.tHead?.rows[0]?.cells ?? [])].map((cell) => cell.textContent);
    for (const body of table.tBodies)
      for (const row of body.rows)
        for (const [i, cell] of [...row.cells].entries())
          cell.dataset.label = row.cells.length === names.length ? names[i] : "";
  }
}
