// Tables that become one card per row on a phone (console.css `table.cards`): each cell carries its column's
// name as `data-label`, which the narrow layout shows above the cell's value.
export function labelCells(root) {
  for (const table of root.querySelectorAll("table.cards")) {
    const names = [...(table.tHead?.rows[0]?.cells ?? [])].map((cell) => cell.textContent);
    for (const body of table.tBodies)
      for (const row of body.rows)
        for (const [i, cell] of [...row.cells].entries())
          cell.dataset.label = row.cells.length === names.length ? names[i] : "";
  }
}
